// JSON-lines command loop shared by the driver scripts.
//
// One JSON object per stdin line: {"id": <any>, "op": <name>, ...fields}. One JSON object per stdout line:
// {"id", "ok": true, ...result} or {"id", "ok": false, "error": <name>, "message": <text>}. Commands run
// concurrently, so a long wait (e.g. for the other device to connect) never blocks later commands; answers carry
// the command's id. A failing command never ends the process.
//
// stdout carries the protocol only: everything that libraries print (matrix-js-sdk logs through console) is sent
// to stderr before any library is loaded.

import { createInterface } from "node:readline";

for (const method of ["log", "info", "debug", "trace", "warn"]) {
    console[method] = (...args) => console.error(...args);
}

// A library promise nobody awaits (e.g. js-sdk's expiry timer cancelling a session) must not kill the driver:
// Node would exit on an unhandled rejection. Log it for the failure messages instead.
process.on("unhandledRejection", (reason) => console.error("unhandled rejection:", reason));

const write = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

/** Thrown by handlers for a bad command; reported with this name instead of the generic "Error". */
export class CommandError extends Error {
    constructor(name, message) {
        super(message);
        this.name = name;
    }
}

/** Fetch a required field of a command, with a named error when it is missing. */
export function need(cmd, field) {
    if (cmd[field] === undefined || cmd[field] === null) {
        throw new CommandError("MissingField", `op ${cmd.op} needs field ${field}`);
    }
    return cmd[field];
}

// Ops every driver has: `ping` answers at once, `sleep {seconds}` answers later (for testing the harness itself).
const BUILTIN = {
    async ping() {
        return { pid: process.pid };
    },
    async sleep(cmd) {
        await new Promise((resolve) => setTimeout(resolve, 1000 * need(cmd, "seconds")));
        return {};
    },
};

/** Serve `handlers` (op name -> async (cmd) => result object) on stdin/stdout until stdin closes. */
export function serve(driverHandlers) {
    const handlers = { ...BUILTIN, ...driverHandlers };
    const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
    lines.on("line", (line) => {
        if (!line.trim()) return;
        let cmd;
        try {
            cmd = JSON.parse(line);
        } catch (err) {
            write({ id: null, ok: false, error: "BadJson", message: String(err) });
            return;
        }
        const id = cmd.id ?? null;
        const handler = Object.hasOwn(handlers, cmd.op) ? handlers[cmd.op] : undefined;
        if (!handler) {
            write({ id, ok: false, error: "UnknownOp", message: `unknown op ${JSON.stringify(cmd.op)}` });
            return;
        }
        void (async () => {
            try {
                const result = (await handler(cmd)) ?? {};
                write({ ...result, id, ok: true });
            } catch (err) {
                // wasm-bindgen throws plain strings or objects for some Rust errors; report them all by name.
                const name = err?.name ?? typeof err;
                const message = err?.message ?? String(err);
                const reply = { id, ok: false, error: name, message, stack: err?.stack ?? null };
                // A failure reason (js-sdk's RendezvousError.code) travels with the error when there is one.
                if (typeof err?.code === "string") reply.code = err.code;
                write(reply);
            }
        })();
    });
    // Closing stdin ends the driver at once: commands still waiting (a receive nobody will answer) are abandoned.
    lines.on("close", () => process.exit(0));
    write({ id: "ready", ok: true, pid: process.pid, node: process.version });
}
