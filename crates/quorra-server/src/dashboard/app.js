// The dashboard's shell: the nav and hash routing, the token prompt, the error banner
// and the confirmation dialog that every page shares.

import { ApiError, AuthError, call, onAuthRequired, setToken, token } from "./api.js";
import * as overview from "./overview.js";
import * as nodes from "./nodes.js";
import * as ring from "./ring.js";
import * as keys from "./keys.js";
import * as namespaces from "./namespaces.js";
import * as console_ from "./console.js";

const PAGES = { overview, nodes, ring, keys, namespaces, console: console_ };

const $ = (id) => document.getElementById(id);
let unmount = null;
let locked = false;

/** Shows an API error (or any error) in the banner; `null` clears it. */
function showError(error) {
  const banner = $("error");
  if (!error) {
    banner.classList.add("hidden");
    banner.textContent = "";
    return;
  }
  // A 401 is the token prompt's business, not the banner's.
  if (error instanceof AuthError) return;
  banner.textContent = error instanceof ApiError ? error.message : `Error: ${error.message}`;
  banner.classList.remove("hidden");
}

/** Asks `question` in a modal dialog; resolves true when confirmed. */
function confirm(question, action = "Confirm") {
  const dialog = $("confirm");
  $("confirm-text").textContent = question;
  $("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

const context = { showError, confirm };

function route() {
  const name = location.hash.replace(/^#\/?/, "").split("/")[0] || "overview";
  const page = PAGES[name] ? name : "overview";
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  if (unmount) unmount();
  unmount = null;
  showError(null);
  const root = $("page");
  root.replaceChildren();
  root.dataset.page = page;
  if (locked) return;
  unmount = PAGES[page].mount(root, context) || null;
}

// Any 401 stops the page (no data is shown without the token) and asks for it.
onAuthRequired((error) => {
  // An answer to a call made with an older token (or none) says nothing about the
  // token in use now.
  if (error.sent !== token()) return;
  setToken(null);
  lock(error.sent ? error.message : "");
});

function lock(message) {
  if (!locked) {
    locked = true;
    if (unmount) unmount();
    unmount = null;
    $("page").replaceChildren();
  }
  showError(null);
  $("auth").classList.remove("hidden");
  $("forget-token").classList.add("hidden");
  const text = $("auth-message");
  text.textContent = message;
  text.classList.toggle("hidden", !message);
  $("auth-token").focus();
}

$("auth-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("auth-token").value);
  $("auth-token").value = "";
  unlock();
});

function unlock() {
  locked = false;
  $("auth").classList.add("hidden");
  $("forget-token").classList.toggle("hidden", !token());
  route();
  nodeName();
}

$("forget-token").addEventListener("click", () => {
  setToken(null);
  lock("");
});

// The node the page talks to, in the header: all figures are the cluster's as this
// node sees them.
async function nodeName() {
  try {
    const cluster = await call("/v1/cluster");
    $("node-name").textContent = `via node ${cluster.self}`;
  } catch (error) {
    // A single node answers 404 here; anything else shows on the pages themselves.
    if (error instanceof ApiError && error.status === 404) $("node-name").textContent = "single node";
  }
}

window.addEventListener("hashchange", route);
$("forget-token").classList.toggle("hidden", !token());
route();
nodeName();
