// Driver for matrix-js-sdk's MSC4108 rendezvous (Element Web's own code): MSC4108RendezvousSession (HTTP transport)
// and MSC4108SecureChannel (ECIES handshake over it), as either device.
//
// One driver process is one device with one channel. Every HTTP exchange goes through a tracing fetchFn, so a test
// can assert what Element Web actually sent and received.
//
// ops:
//   create {fallback_rz_server}        G: POST to the absolute create URL           -> {url}
//   generate_code {mode?: "Login"|"Reciprocate", server_name?}                      -> {hex}
//   scan {qr_hex}                      S: join the session named by a QR code        -> {url, mode, server_name}
//   join {url, public_key?}            join a session by URL (S when public_key, b64) -> {url}
//   connect                            run the handshake (G waits for S)             -> {check_code}
//   check_code                                                                       -> {check_code}
//   secure_send {payload}              encrypt a JSON payload and PUT it             -> {}
//   secure_receive                     poll until a payload arrives, decrypt it      -> {payload}
//   session_send {data} / session_receive   raw transport, no encryption             -> {} / {data}
//   cancel {reason?}                   MSC4108SecureChannel.cancel (ends in DELETE)  -> {}
//   close                              MSC4108SecureChannel.close (DELETE)           -> {}
//   state                                                                            -> {url, ready, cancelled, failures}
//   trace {clear?}                     HTTP exchanges so far                         -> {trace: [...]}

import { CommandError, need, serve } from "./jsonl.mjs";

const wasm = await import("@matrix-org/matrix-sdk-crypto-wasm");
await wasm.initAsync();
const { Curve25519PublicKey, QrCodeData, QrCodeIntent } = wasm;
const { MSC4108RendezvousSession, MSC4108SecureChannel, MSC4108FailureReason } = await import(
    "matrix-js-sdk/lib/rendezvous/index.js"
);

let trace = [];
const failures = [];
let session;
let channel;

const TRACED_REQUEST_HEADERS = ["content-type", "if-match", "if-none-match"];
const TRACED_RESPONSE_HEADERS = ["content-type", "etag", "expires", "last-modified", "location"];

function pick(headers, names) {
    const out = {};
    for (const name of names) {
        const value = headers.get(name);
        if (value !== null) out[name] = value;
    }
    return out;
}

async function tracingFetch(resource, options = {}) {
    const entry = {
        method: options.method ?? "GET",
        url: String(resource),
        request_headers: pick(new Headers(options.headers ?? {}), TRACED_REQUEST_HEADERS),
        request_body: typeof options.body === "string" ? options.body : null,
    };
    trace.push(entry);
    try {
        const response = await globalThis.fetch(resource, options);
        entry.status = response.status;
        entry.final_url = response.url;
        entry.response_headers = pick(response.headers, TRACED_RESPONSE_HEADERS);
        return response;
    } catch (err) {
        entry.status = null;
        entry.error = String(err?.cause ?? err);
        throw err;
    }
}

const onFailure = (reason) => failures.push(reason);

function requireChannel() {
    if (!channel) throw new CommandError("NoChannel", "create, scan or join first");
    return channel;
}

function newSession(options) {
    if (session) throw new CommandError("AlreadyStarted", "this driver already has a session");
    session = new MSC4108RendezvousSession({ ...options, fetchFn: tracingFetch, onFailure });
    return session;
}

function join(url, publicKey) {
    newSession({ url });
    channel = new MSC4108SecureChannel(session, publicKey, onFailure);
}

serve({
    async create(cmd) {
        newSession({ fallbackRzServer: need(cmd, "fallback_rz_server") });
        channel = new MSC4108SecureChannel(session, undefined, onFailure);
        // MSC4108SignInWithQR creates the session exactly like this: an empty first payload, POSTed.
        await session.send("");
        if (!session.url) throw new CommandError("CreateFailed", "the POST gave no rendezvous URL");
        return { url: session.url };
    },
    async generate_code(cmd) {
        const mode = QrCodeIntent[cmd.mode ?? "Login"];
        if (mode === undefined) throw new CommandError("BadMode", `unknown mode ${JSON.stringify(cmd.mode)}`);
        const bytes = await requireChannel().generateCode(mode, cmd.server_name);
        return { hex: Buffer.from(bytes).toString("hex") };
    },
    async scan(cmd) {
        const data = QrCodeData.fromBytes(new Uint8Array(Buffer.from(need(cmd, "qr_hex"), "hex")));
        const url = data.rendezvousUrl;
        if (!url) throw new CommandError("NotMsc4108", "the QR code carries no MSC4108 rendezvous URL");
        const mode = data.mode === QrCodeIntent.Login ? "Login" : "Reciprocate";
        const serverName = data.serverName ?? null;
        join(url, data.publicKey);
        return { url, mode, server_name: serverName };
    },
    async join(cmd) {
        join(need(cmd, "url"), cmd.public_key ? new Curve25519PublicKey(cmd.public_key) : undefined);
        return { url: session.url };
    },
    async connect() {
        await requireChannel().connect();
        return { check_code: channel.getCheckCode() ?? null };
    },
    async check_code() {
        return { check_code: requireChannel().getCheckCode() ?? null };
    },
    async secure_send(cmd) {
        await requireChannel().secureSend(need(cmd, "payload"));
        return {};
    },
    async secure_receive() {
        const payload = await requireChannel().secureReceive();
        return { payload: payload ?? null };
    },
    async session_send(cmd) {
        requireChannel();
        await session.send(need(cmd, "data"));
        return {};
    },
    async session_receive() {
        requireChannel();
        return { data: (await session.receive()) ?? null };
    },
    async cancel(cmd) {
        await requireChannel().cancel(cmd.reason ?? MSC4108FailureReason.UserCancelled);
        return {};
    },
    async close() {
        await requireChannel().close();
        return {};
    },
    async state() {
        return {
            url: session?.url ?? null,
            ready: session?.ready ?? false,
            cancelled: session?.cancelled ?? false,
            failures,
        };
    },
    async trace(cmd) {
        const result = trace;
        if (cmd.clear) trace = [];
        return { trace: result };
    },
});
