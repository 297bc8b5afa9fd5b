// Driver for a real headless Chromium (Debian's /usr/bin/chromium) through playwright-core: the user's browser on
// web pages such as the dev stack's verification page.
//
// playwright-core never downloads a browser of its own: it is only ever pointed at `executable_path`.
// One driver process is one browser with one page at a time; `launch` starts a fresh one (closing any before it).
//
// ops:
//   launch {executable_path, user_data_dir}   start Chromium on a fresh profile folder  -> {version}
//   goto {url}                                 open a URL, wait for it to load          -> page
//   fill {selector, value}                     type into a form field                   -> {}
//   value {selector}                           a form field's current value             -> {value}
//   submit {selector}                          click a button, wait for the next page   -> page
//   screenshot {path}                          PNG of the whole page                    -> {bytes}
//   close_browser                                                                       -> {}
// page = {url, status, title, text}: the document's final URL, the HTTP status of its response, its title and the
// body's visible text.

import { CommandError, need, serve } from "./jsonl.mjs";

const { chromium } = await import("playwright-core");

// As root on a headless machine: no sandbox (root cannot use it), no GPU, and nothing that reaches the network on
// its own (QUIC probes, component updates, sync, first-run pages).
const CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];
const TIMEOUT_MS = 15000;

let context;
let page;

function requirePage() {
    if (!page) throw new CommandError("NoBrowser", "launch first");
    return page;
}

async function describe(response) {
    return {
        url: page.url(),
        status: response ? response.status() : null,
        title: await page.title(),
        text: await page.locator("body").innerText(),
    };
}

async function closeBrowser() {
    const open = context;
    context = undefined;
    page = undefined;
    if (open) await open.close();
}

serve({
    async launch(cmd) {
        await closeBrowser();
        context = await chromium.launchPersistentContext(need(cmd, "user_data_dir"), {
            executablePath: need(cmd, "executable_path"),
            headless: true,
            args: CHROMIUM_ARGS,
            timeout: 60000,
        });
        context.setDefaultTimeout(TIMEOUT_MS);
        page = context.pages()[0] ?? (await context.newPage());
        return { version: context.browser()?.version() ?? null };
    },
    async goto(cmd) {
        const response = await requirePage().goto(need(cmd, "url"), { waitUntil: "load" });
        return describe(response);
    },
    async fill(cmd) {
        await requirePage().locator(need(cmd, "selector")).fill(need(cmd, "value"));
        return {};
    },
    async value(cmd) {
        return { value: await requirePage().locator(need(cmd, "selector")).inputValue() };
    },
    async submit(cmd) {
        // Wait for the navigation the click starts (a form POST), not just for the current page's load state.
        const navigation = requirePage().waitForNavigation({ waitUntil: "load" });
        await page.locator(need(cmd, "selector")).click();
        return describe(await navigation);
    },
    async screenshot(cmd) {
        const png = await requirePage().screenshot({ path: need(cmd, "path"), fullPage: true });
        return { bytes: png.length };
    },
    async close_browser() {
        await closeBrowser();
        return {};
    },
});
