// Keeps the dashboard's Overview open in headless Chromium for a while, for
// measure-cpu.sh: what its polling once a second costs a node.
//
//   node overview-open.mjs URL SECONDS
//
// Prints "open" once the first figures are drawn, and exits after SECONDS more.

import { chromium } from "playwright-core";

const [url, seconds] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
await page.goto(new URL("#/overview", url).href);
await page.locator(".card.figure .value").first().waitFor();
console.log("open");
await page.waitForTimeout(Number(seconds) * 1000);
// The page polled all along: its charts hold a point per second.
const points = await page.$eval("svg.chart polyline", (line) => line.getAttribute("points").split(" ").length);
console.log(`closed after ${points} points on the first chart`);
await browser.close();
