// Driver for @matrix-org/matrix-sdk-crypto-wasm (vodozemac compiled to wasm, Element Web's crypto).
//
// Ecies in either role, and QrCodeData encode/decode. Keys travel as unpadded standard base64 (vodozemac's own
// encoding), raw bytes as hex. wasm objects live in a handle table: an `Ecies` is single-use and its keys cannot be
// seeded, so the test refers to it by handle between commands.
//
// ops:
//   ecies_new                                   -> {handle, public_key}            (G: the key that goes in the QR)
//   ecies_outbound {public_key, plaintext?, handle?}
//                                               -> {channel, message, public_key}  (S: LoginInitiateMessage)
//   ecies_inbound {handle, message}             -> {channel, plaintext, public_key} (G: accept the initiate)
//   encrypt {channel, plaintext}                -> {message}
//   decrypt {channel, message}                  -> {plaintext}
//   check_code {channel}                        -> {bytes, digits, digits_no_leading_zero}
//   qr_encode_gen1 {public_key, rendezvous_url, server_name?} -> {hex}
//   qr_encode_msc4388 {public_key, rendezvous_id, base_url, intent: "Login"|"Reciprocate"} -> {hex}
//   qr_decode {hex}                             -> decoded fields (see decodeQr)
//   free {handle}                               -> {}

import { CommandError, need, serve } from "./jsonl.mjs";

const wasm = await import("@matrix-org/matrix-sdk-crypto-wasm");
await wasm.initAsync();
const { Curve25519PublicKey, Ecies, QrCodeData, QrCodeIntent } = wasm;

export const LOGIN_INITIATE = "MATRIX_QR_CODE_LOGIN_INITIATE";

const handles = new Map();
let nextHandle = 1;

function keep(obj, prefix) {
    const handle = `${prefix}${nextHandle++}`;
    handles.set(handle, obj);
    return handle;
}

function lookup(cmd, field, type) {
    const handle = need(cmd, field);
    const obj = handles.get(handle);
    if (!(obj instanceof type)) {
        throw new CommandError("UnknownHandle", `no ${type.name} with handle ${JSON.stringify(handle)}`);
    }
    return obj;
}

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text, "hex"));

function intentName(intent) {
    return intent === QrCodeIntent.Login ? "Login" : intent === QrCodeIntent.Reciprocate ? "Reciprocate" : intent;
}

function checkCode(channel) {
    const code = channel.check_code();
    const bytes = code.as_bytes();
    return {
        bytes: hex(bytes),
        digits: String(code.to_digit()).padStart(2, "0"),
        digits_no_leading_zero: String(code.toDigitNoLeadingZero()),
    };
}

function decodeQr(data) {
    const intentData = data.intentData;
    const msc4108 = intentData.msc4108;
    const msc4388 = intentData.msc4388;
    return {
        mode: intentName(data.mode),
        public_key: data.publicKey.toBase64(),
        rendezvous_url: data.rendezvousUrl ?? null,
        server_name: data.serverName ?? null,
        msc4108: msc4108 ? { rendezvous_url: msc4108.rendezvousUrl, server_name: msc4108.serverName ?? null } : null,
        msc4388: msc4388 ? { rendezvous_id: msc4388.rendezvousId, base_url: msc4388.baseUrl } : null,
        to_bytes_hex: hex(data.toBytes()),
    };
}

serve({
    async ecies_new() {
        const ecies = new Ecies();
        return { handle: keep(ecies, "ecies"), public_key: ecies.public_key().toBase64() };
    },
    async ecies_outbound(cmd) {
        const ecies = cmd.handle ? lookup(cmd, "handle", Ecies) : new Ecies();
        if (cmd.handle) handles.delete(cmd.handle); // an Ecies is consumed by establishing a channel
        const theirs = new Curve25519PublicKey(need(cmd, "public_key"));
        const result = ecies.establish_outbound_channel(theirs, cmd.plaintext ?? LOGIN_INITIATE);
        const channel = result.channel;
        return {
            channel: keep(channel, "channel"),
            message: result.initial_message,
            public_key: channel.public_key().toBase64(),
        };
    },
    async ecies_inbound(cmd) {
        const ecies = lookup(cmd, "handle", Ecies);
        handles.delete(cmd.handle);
        const result = ecies.establish_inbound_channel(need(cmd, "message"));
        const channel = result.channel;
        return { channel: keep(channel, "channel"), plaintext: result.message, public_key: channel.public_key().toBase64() };
    },
    async encrypt(cmd) {
        return { message: lookup(cmd, "channel", wasm.EstablishedEcies).encrypt(need(cmd, "plaintext")) };
    },
    async decrypt(cmd) {
        return { plaintext: lookup(cmd, "channel", wasm.EstablishedEcies).decrypt(need(cmd, "message")) };
    },
    async check_code(cmd) {
        return checkCode(lookup(cmd, "channel", wasm.EstablishedEcies));
    },
    async qr_encode_gen1(cmd) {
        // The constructor consumes the key object, so a fresh one is built per call.
        const key = new Curve25519PublicKey(need(cmd, "public_key"));
        const data = new QrCodeData(key, need(cmd, "rendezvous_url"), cmd.server_name ?? undefined);
        return { hex: hex(data.toBytes()) };
    },
    async qr_encode_msc4388(cmd) {
        const key = new Curve25519PublicKey(need(cmd, "public_key"));
        const intent = QrCodeIntent[need(cmd, "intent")];
        if (intent === undefined) throw new CommandError("BadIntent", `unknown intent ${JSON.stringify(cmd.intent)}`);
        const data = QrCodeData.newMsc4388(key, need(cmd, "rendezvous_id"), need(cmd, "base_url"), intent);
        return { hex: hex(data.toBytes()) };
    },
    async qr_decode(cmd) {
        return decodeQr(QrCodeData.fromBytes(fromHex(need(cmd, "hex"))));
    },
    async free(cmd) {
        const obj = handles.get(need(cmd, "handle"));
        handles.delete(cmd.handle);
        obj?.free?.();
        return {};
    },
});
