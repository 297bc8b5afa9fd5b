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
//   trace {clear?}                     HTTP exchanges so far (a 200 GET's body in response_body; started_ms and
//                                      answered_ms: epoch ms when sent and when answered) -> {trace: [...]}
//   set_get_timeout {ms}               give up on a GET after ms without an answer and send it again (a client
//                                      whose request timeout is shorter than the server holds a poll; null: off)
//                                                                                    -> {}
//
// The new device's whole login (MSC4108SignInWithQR with no MatrixClient, so intent Login), one step per op:
//   sign_in_generate {homeserver_url}  new device shows the QR: signInByGeneratingQR with a temporary MatrixClient
//                                      (session on that homeserver's MSC4108 endpoint)  -> {url, hex}
//   sign_in_scan {qr_hex}              new device scanned the existing device's QR      -> {url, mode, server_name}
//   negotiate                          negotiateProtocols: handshake, then (if it showed the QR) m.login.protocols
//                                                                                    -> {server_name, check_code}
//   qr_login_available {homeserver_url}  isSignInWithQRAvailable(temporary client)    -> {available}
//   auth_metadata {homeserver_url}     MatrixClient.getAuthMetadata (validates it)   -> {metadata}
//   register_client {metadata, client_metadata}  OAuth2.registerClient               -> {client_id}
//   device_authorization {metadata, client_id, device_id}
//                                      deviceAuthorizationGrant: RFC 8628 request, then m.login.protocol
//                                                                                    -> {verification_uri, user_code}
//   complete_login {client_id}         completeLoginOnNewDevice: m.login.protocol_accepted, then token polling
//                                                                                    -> {token_type, access_token, refresh_token, ...}
//   share_secrets                      shareSecrets: m.login.success, then m.login.secrets, parsed by the wasm
//                                      SecretsBundle as importSecretsBundle would   -> {secrets, bundle}
// A RendezvousError is answered as error "RendezvousError" with its failure reason in `code`.

import { CommandError, need, serve } from "./jsonl.mjs";

const wasm = await import("@matrix-org/matrix-sdk-crypto-wasm");
await wasm.initAsync();
const { Curve25519PublicKey, QrCodeData, QrCodeIntent } = wasm;
const {
    MSC4108RendezvousSession,
    MSC4108SecureChannel,
    MSC4108FailureReason,
    MSC4108SignInWithQR,
    RendezvousError,
    isSignInWithQRAvailable,
    signInByGeneratingQR,
} = await import("matrix-js-sdk/lib/rendezvous/index.js");

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

const realFetch = globalThis.fetch;
/** set_get_timeout: ms after which a GET without an answer is abandoned and sent again; null: never. */
let getTimeoutMs = null;
const MAX_GET_ATTEMPTS = 100;

async function tracingFetch(resource, options = {}) {
    if ((options.method ?? "GET") !== "GET" || getTimeoutMs === null || options.signal) {
        return tracedFetch(resource, options);
    }
    for (let attempt = 1; ; attempt++) {
        const controller = new AbortController();
        const timer = setTimeout(
            () => controller.abort(new DOMException("no answer in time", "TimeoutError")),
            getTimeoutMs,
        );
        try {
            // The timer covers the wait for the answer's headers, which is what a held poll delays.
            return await tracedFetch(resource, { ...options, signal: controller.signal });
        } catch (err) {
            if (!controller.signal.aborted || attempt >= MAX_GET_ATTEMPTS) throw err;
        } finally {
            clearTimeout(timer);
        }
    }
}

async function tracedFetch(resource, options = {}) {
    const entry = {
        method: options.method ?? "GET",
        url: String(resource),
        request_headers: pick(new Headers(options.headers ?? {}), TRACED_REQUEST_HEADERS),
        request_body: typeof options.body === "string" ? options.body : null,
        started_ms: Date.now(),
    };
    trace.push(entry);
    try {
        const response = await realFetch(resource, options);
        entry.status = response.status;
        entry.answered_ms = Date.now();
        entry.final_url = response.url;
        entry.response_headers = pick(response.headers, TRACED_RESPONSE_HEADERS);
        if (entry.method === "GET" && response.status === 200) {
            entry.response_body = await response.clone().text();
        }
        return response;
    } catch (err) {
        entry.status = null;
        entry.error = String(err?.cause ?? err);
        throw err;
    }
}

// js-sdk's OAuth helpers (registration, device authorization, token polling) and a MatrixClient without fetchFn
// call the global fetch: route it through the tracer too, so every request of a login shows up in `trace`.
globalThis.fetch = tracingFetch;

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

let signIn; // MSC4108SignInWithQR as the new device

function requireSignIn() {
    if (!signIn) throw new CommandError("NoSignIn", "sign_in_generate or sign_in_scan first");
    return signIn;
}

/** A MatrixClient that is not signed in, as Element Web creates for a homeserver before login. */
async function tempClient(baseUrl) {
    const { createClient } = await import("matrix-js-sdk/lib/matrix.js");
    return createClient({ baseUrl, fetchFn: tracingFetch });
}

/** Run a step of the login; a RendezvousError keeps its failure reason (`code`) in the answer. */
async function step(fn) {
    try {
        return await fn();
    } catch (err) {
        if (err instanceof RendezvousError) {
            const named = new CommandError("RendezvousError", err.message);
            named.code = err.code;
            throw named;
        }
        throw err;
    }
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
    async sign_in_generate(cmd) {
        if (session) throw new CommandError("AlreadyStarted", "this driver already has a session");
        const client = await tempClient(need(cmd, "homeserver_url"));
        signIn = await signInByGeneratingQR(client, onFailure, new AbortController().signal);
        // signInByGeneratingQR keeps its channel and session private; the state and cancel ops reach them here.
        channel = signIn.channel;
        session = channel.rendezvousSession;
        return { url: session.url, hex: Buffer.from(signIn.code).toString("hex") };
    },
    async sign_in_scan(cmd) {
        const data = QrCodeData.fromBytes(new Uint8Array(Buffer.from(need(cmd, "qr_hex"), "hex")));
        if (!data.rendezvousUrl) throw new CommandError("NotMsc4108", "the QR code carries no MSC4108 rendezvous URL");
        join(data.rendezvousUrl, data.publicKey);
        signIn = new MSC4108SignInWithQR(channel, true, undefined, onFailure);
        const mode = data.mode === QrCodeIntent.Login ? "Login" : "Reciprocate";
        return { url: data.rendezvousUrl, mode, server_name: data.serverName ?? null };
    },
    async negotiate() {
        return step(async () => {
            const { serverName } = await requireSignIn().negotiateProtocols();
            return { server_name: serverName ?? null, check_code: signIn.checkCode ?? null };
        });
    },
    async qr_login_available(cmd) {
        return { available: await isSignInWithQRAvailable(await tempClient(need(cmd, "homeserver_url"))) };
    },
    async auth_metadata(cmd) {
        const client = await tempClient(need(cmd, "homeserver_url"));
        return { metadata: await client.getAuthMetadata() };
    },
    async register_client(cmd) {
        const { OAuth2 } = await import("matrix-js-sdk/lib/oauth/index.js");
        return { client_id: await OAuth2.registerClient(need(cmd, "metadata"), need(cmd, "client_metadata")) };
    },
    async device_authorization(cmd) {
        return step(async () => {
            const { verificationUri, userCode } = await requireSignIn().deviceAuthorizationGrant({
                metadata: need(cmd, "metadata"),
                clientId: need(cmd, "client_id"),
                deviceId: need(cmd, "device_id"),
            });
            return { verification_uri: verificationUri ?? null, user_code: userCode ?? null };
        });
    },
    async complete_login(cmd) {
        return step(async () => ({
            ...(await requireSignIn().completeLoginOnNewDevice({ clientId: need(cmd, "client_id") })),
        }));
    },
    async share_secrets() {
        return step(async () => {
            const { secrets } = await requireSignIn().shareSecrets();
            const { type: _type, ...content } = secrets ?? {};
            const bundle = wasm.SecretsBundle.from_json(content);
            const backup = bundle.backupBundle;
            const parsed = {
                master_key: bundle.masterKey,
                self_signing_key: bundle.selfSigningKey,
                user_signing_key: bundle.userSigningKey,
                backup: backup ? { key: backup.key, backup_version: backup.backup_version } : null,
            };
            bundle.free();
            return { secrets: content, bundle: parsed };
        });
    },
    async set_get_timeout(cmd) {
        getTimeoutMs = cmd.ms ?? null;
        return {};
    },
    async trace(cmd) {
        const result = trace;
        if (cmd.clear) trace = [];
        return { trace: result };
    },
});
