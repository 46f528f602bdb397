// The demo page: sign-up, cookie-mode sign-in, the four test routes, the user's sessions.
//
// Where things live, and why:
// - the refresh token: only in the HttpOnly session cookie the server sets (Path=/api/auth),
//   so no script, this one included, can read or leak it;
// - the access token and the CSRF token: in this module's variables, never in
//   localStorage or sessionStorage, so a reload forgets them;
// - a call answered 401 refreshes the access token once and is retried once. All calls that
//   fail together share one refresh: a second refresh with the same cookie would present a
//   retired refresh token.
// Everything the server says is put on the page with textContent, never as HTML: a user
// agent string is whatever the client that signed in chose to send.

const ROUTES = {
  signup: "/api/auth/signup",
  signin: "/api/auth/signin",
  refresh: "/api/auth/refreshtoken",
  signout: "/api/auth/signout",
  sessions: "/api/auth/sessions",
  me: "/api/users/me",
};
const LOG_LIMIT = 10;

// Counters for tests and for anyone curious: refresh requests sent, actions finished, and
// whether the page has finished its start-up.
const stats = { refreshes: 0, settled: 0, ready: false };
window.demoStats = stats;

let auth = null; // {username, roles, accessToken, csrfToken, expiresIn}, in memory only
let generation = 0; // bumped at each sign-in and sign-out: late answers of older ones are dropped
let refreshing = null; // the one refresh in flight, shared by every call waiting for it

const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
const el = {
  username: byTestId("username"),
  email: byTestId("email"),
  password: byTestId("password"),
  signup: byTestId("signup"),
  signin: byTestId("signin"),
  signout: byTestId("signout"),
  output: byTestId("output"),
  status: byTestId("status"),
  sessions: byTestId("sessions"),
  log: byTestId("log"),
  form: document.getElementById("account-form"),
  pill: document.getElementById("status-pill"),
  facts: document.getElementById("facts"),
  roles: document.getElementById("roles"),
  accessTtl: document.getElementById("access-ttl"),
  sessionCount: document.getElementById("session-count"),
  reloadSessions: byTestId("reload-sessions"),
};

// ---- HTTP ---------------------------------------------------------------------------

/** One request; the answer as {status, ok, data, text, message}. Never throws. */
async function request(method, path, { body, token, csrf } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  if (csrf) headers["X-CSRF-Token"] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (error) {
    return { status: 0, ok: false, data: null, text: "", message: `network error (${error.message})` };
  }
  const text = await response.text();
  let data = null;
  if ((response.headers.get("Content-Type") || "").includes("json")) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  const message = typeof data?.message === "string" ? data.message : text || response.statusText;
  return { status: response.status, ok: response.ok, data, text, message };
}

/** The contract's failure text: `<status> <message>`. */
function failure(result) {
  return result.status ? `${result.status} ${result.message}` : `Failed: ${result.message}`;
}

/** A call with the access token; on 401, one shared refresh and one retry. */
async function authorized(method, path) {
  const sent = auth?.accessToken;
  const first = await request(method, path, { token: sent });
  if (first.status !== 401 || !auth) return first;
  if (!(await refreshOnce(sent)) || !auth) return first;
  return request(method, path, { token: auth.accessToken });
}

/** Join the refresh in flight, or start one, unless the token that failed was already
 * replaced (a refresh finished between sending the call and reading its 401). */
function refreshOnce(failedToken) {
  if (!auth) return Promise.resolve(false);
  if (auth.accessToken !== failedToken) return Promise.resolve(true);
  if (!refreshing) {
    refreshing = refresh().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/** POST /api/auth/refreshtoken from the cookie. True when a new access token is held. */
async function refresh({ quiet = false } = {}) {
  const mine = generation;
  stats.refreshes += 1;
  const result = await request("POST", ROUTES.refresh, { body: {}, csrf: auth?.csrfToken });
  if (mine !== generation) return false;
  if (result.ok && typeof result.data?.accessToken === "string") {
    auth = {
      ...auth,
      accessToken: result.data.accessToken,
      csrfToken: result.data.csrfToken ?? auth?.csrfToken,
      expiresIn: result.data.expiresIn ?? auth?.expiresIn,
    };
    if (!quiet) log("Access token refreshed silently.", "info");
    return true;
  }
  if (!quiet && auth) {
    forget();
    log(`Session ended (${failure(result)}). Sign in again.`, "error");
  }
  return false;
}

// ---- Actions ------------------------------------------------------------------------

async function signUp() {
  const body = {
    username: el.username.value.trim(),
    email: el.email.value.trim(),
    password: el.password.value,
  };
  const result = await request("POST", ROUTES.signup, { body });
  const text = result.ok ? result.message : failure(result);
  show(text, result.ok ? "ok" : "error");
  log(`Sign-up: ${text}`, result.ok ? "ok" : "error");
}

async function signIn() {
  const body = { username: el.username.value.trim(), password: el.password.value, cookie: true };
  const result = await request("POST", ROUTES.signin, { body });
  if (!result.ok || typeof result.data?.accessToken !== "string") {
    const text = failure(result);
    show(text, "error");
    log(`Sign-in: ${text}`, "error");
    return;
  }
  const data = result.data;
  generation += 1;
  refreshing = null; // a refresh of the previous session must not serve this one
  auth = {
    username: data.username,
    roles: Array.isArray(data.roles) ? data.roles : [],
    accessToken: data.accessToken,
    csrfToken: data.csrfToken,
    expiresIn: data.expiresIn,
  };
  el.password.value = "";
  render();
  show(`Signed in as ${data.username}.`, "ok");
  log(`Signed in as ${data.username}.`, "ok");
  await loadSessions();
}

async function signOut() {
  const result = await request("POST", ROUTES.signout, { body: {}, csrf: auth?.csrfToken });
  forget();
  const text = result.ok ? result.message : failure(result);
  show(text, result.ok ? "ok" : "error");
  log(`Sign-out: ${text}`, result.ok ? "ok" : "error");
}

async function call(path) {
  const result = await authorized("GET", path);
  const text = result.ok ? result.text : failure(result);
  show(text, result.ok ? "ok" : "error");
  log(`GET ${path} → ${text}`, result.ok ? "ok" : "error");
}

async function loadSessions() {
  if (!auth) {
    renderSessions(null);
    return;
  }
  const result = await authorized("GET", ROUTES.sessions);
  if (!auth) {
    renderSessions(null);
  } else if (result.ok && Array.isArray(result.data?.sessions)) {
    renderSessions(result.data.sessions);
  } else {
    renderSessions(null, `Could not load sessions: ${failure(result)}`);
  }
}

async function revoke(session) {
  const path = `${ROUTES.sessions}/${encodeURIComponent(session.id)}`;
  const result = await authorized("DELETE", path);
  const text = result.ok ? result.message : failure(result);
  show(text, result.ok ? "ok" : "error");
  log(`Revoke ${session.current ? "this device" : describeDevice(session.userAgent)}: ${text}`,
    result.ok ? "ok" : "error");
  if (result.ok && session.current) {
    // This page's own session is gone: expire its cookie too, and forget the tokens.
    await request("POST", ROUTES.signout, { body: {}, csrf: auth?.csrfToken });
    forget();
    return;
  }
  await loadSessions();
}

/** Drop everything held in memory. */
function forget() {
  generation += 1;
  auth = null;
  refreshing = null;
  render();
  renderSessions(null);
}

// ---- Rendering ----------------------------------------------------------------------

function render() {
  const signedIn = auth !== null && typeof auth.username === "string";
  el.status.textContent = signedIn ? `signed in as ${auth.username}` : "signed out";
  el.pill.dataset.state = signedIn ? "in" : "out";
  el.facts.hidden = !signedIn;
  if (signedIn) {
    el.roles.textContent = auth.roles.map((role) => role.replace(/^ROLE_/, "").toLowerCase()).join(", ") || "–";
    el.accessTtl.textContent = auth.expiresIn ? `in memory, valid ${duration(auth.expiresIn)}` : "in memory";
  }
  el.signout.disabled = !signedIn || el.signout.dataset.busy === "true";
  el.reloadSessions.disabled = !signedIn || el.reloadSessions.dataset.busy === "true";
}

function show(text, kind) {
  el.output.textContent = text;
  el.output.dataset.kind = kind;
}

function log(text, kind) {
  const item = document.createElement("li");
  item.dataset.testid = "log-entry";
  item.dataset.kind = kind;
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString([], { hour12: false });
  const span = document.createElement("span");
  span.textContent = text;
  item.append(time, span);
  el.log.prepend(item);
  while (el.log.children.length > LOG_LIMIT) el.log.lastElementChild.remove();
}

function renderSessions(sessions, problem) {
  const items = [];
  if (!sessions) {
    items.push(placeholder(problem ?? "Sign in to see your sessions."));
  } else if (sessions.length === 0) {
    items.push(placeholder("No live sessions."));
  } else {
    for (const session of sessions) items.push(sessionItem(session));
  }
  el.sessions.replaceChildren(...items);
  el.sessionCount.textContent = sessions?.length ? `${sessions.length} live` : "";
}

function placeholder(text) {
  const item = document.createElement("li");
  item.className = "empty";
  item.textContent = text;
  return item;
}

function sessionItem(session) {
  const item = document.createElement("li");
  item.className = "session";
  item.dataset.testid = "session";
  item.dataset.current = session.current ? "true" : "false";
  item.dataset.sessionId = session.id;

  const icon = document.createElement("span");
  icon.className = "device-icon";
  icon.setAttribute("aria-hidden", "true");
  icon.append(deviceIcon(session.userAgent));

  const body = document.createElement("div");
  body.className = "session-body";
  const title = document.createElement("div");
  title.className = "session-title";
  const name = document.createElement("span");
  name.className = "device";
  name.textContent = describeDevice(session.userAgent);
  name.title = session.userAgent ?? "user agent unknown";
  title.append(name);
  if (session.current) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "This device";
    title.append(badge);
  }
  const meta = document.createElement("div");
  meta.className = "session-meta";
  meta.append(
    fact("IP", session.ip ?? "unknown"),
    fact("Last used", ago(session.lastUsedAt), session.lastUsedAt),
    fact("Signed in", ago(session.createdAt), session.createdAt),
  );
  body.append(title, meta);

  const button = document.createElement("button");
  button.type = "button";
  button.className = "danger";
  button.dataset.testid = "revoke";
  button.textContent = session.current ? "Revoke (sign out)" : "Revoke";
  button.addEventListener("click", () => act(button, () => revoke(session)));

  item.append(icon, body, button);
  return item;
}

function fact(label, value, iso) {
  const span = document.createElement("span");
  span.className = "fact";
  const key = document.createElement("span");
  key.className = "fact-key";
  key.textContent = label;
  const val = document.createElement("span");
  val.textContent = value;
  if (iso) val.title = new Date(iso).toLocaleString();
  span.append(key, val);
  return span;
}

/** "Chrome on Linux" from a user agent; the raw string when it names no known browser. */
function describeDevice(userAgent) {
  if (!userAgent) return "Unknown device";
  const browsers = [
    [/Edg\//, "Edge"],
    [/OPR\//, "Opera"],
    [/Firefox\//, "Firefox"],
    [/(Headless)?Chrome\/|Chromium\//, "Chrome"],
    [/Version\/[\d.]+.*Safari\//, "Safari"],
  ];
  const systems = [
    [/Android/, "Android"],
    [/iPhone|iPad|iPod/, "iOS"],
    [/CrOS/, "ChromeOS"],
    [/Windows/, "Windows"],
    [/Mac OS X|Macintosh/, "macOS"],
    [/Linux/, "Linux"],
  ];
  const browser = browsers.find(([pattern]) => pattern.test(userAgent))?.[1];
  const system = systems.find(([pattern]) => pattern.test(userAgent))?.[1];
  if (!browser) return userAgent.length > 48 ? `${userAgent.slice(0, 47)}…` : userAgent;
  const headless = /Headless/.test(userAgent) ? " (headless)" : "";
  return system ? `${browser}${headless} on ${system}` : `${browser}${headless}`;
}

/** A small phone or screen icon, drawn as SVG (no image requests, no fonts needed). */
function deviceIcon(userAgent) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "20");
  svg.setAttribute("height", "20");
  const mobile = /Android|iPhone|iPod|iPad|Mobile/.test(userAgent ?? "");
  const shapes = mobile
    ? [["rect", { x: 7, y: 2.5, width: 10, height: 19, rx: 2 }], ["path", { d: "M11 18.5h2" }]]
    : [["rect", { x: 3, y: 4, width: 18, height: 12, rx: 1.5 }], ["path", { d: "M8.5 20h7M12 16v4" }]];
  for (const [tag, attributes] of shapes) {
    const shape = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attributes)) shape.setAttribute(name, String(value));
    svg.append(shape);
  }
  return svg;
}

function ago(iso) {
  const then = Date.parse(iso ?? "");
  if (Number.isNaN(then)) return "unknown";
  const seconds = Math.round((Date.now() - then) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(then).toLocaleDateString();
}

function duration(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

// ---- Wiring -------------------------------------------------------------------------

/** Run one user action: its button is busy until the outcome is shown. */
async function act(button, action) {
  button.dataset.busy = "true";
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    show(`Failed: ${error.message}`, "error");
  } finally {
    button.dataset.busy = "false";
    button.disabled = false;
    render();
    stats.settled += 1;
  }
}

el.form.addEventListener("submit", (event) => {
  event.preventDefault();
  act(el.signin, signIn);
});
el.signup.addEventListener("click", () => act(el.signup, signUp));
el.signout.addEventListener("click", () => act(el.signout, signOut));
el.reloadSessions.addEventListener("click", () => act(el.reloadSessions, loadSessions));
// Devices signed in or out elsewhere while this tab was in the background.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && auth) loadSessions();
});
for (const button of document.querySelectorAll("button[data-path]")) {
  button.addEventListener("click", () => act(button, () => call(button.dataset.path)));
}

// No refresh on load: the CSRF token that a cookie refresh needs lived in the memory of
// the page that signed in, so after a reload the page starts signed out.
render();
stats.ready = true;
