// azscep certificate console. Plain JavaScript, no build step: every DOM node is built with createElement and
// textContent (no HTML string is ever parsed), so certificate fields always render as text, their invisible
// characters shown (visible). Every action calls the existing authenticated API on this origin with the signed-in
// user's bearer token. Tokens live in memory and sessionStorage only (MSAL's session storage in Entra mode), never
// in localStorage.
"use strict";

(() => {
  const SESSION_KEY = "azscep.console.session"; // dev mode: {token, expires}
  const PKCE_KEY = "azscep.console.pkce"; // dev mode: {verifier, state, hash} while signing in
  const ROLE_MANAGE = "Certificates.Manage";
  const ROLE_READ = "Certificates.Read";
  const ROLE_REQUEST = "CSR.Request.Db";
  const REASONS = [
    ["unspecified", "Unspecified"],
    ["keyCompromise", "Key compromise"],
    ["affiliationChanged", "Affiliation changed"],
    ["superseded", "Superseded"],
    ["cessationOfOperation", "Cessation of operation"],
    ["privilegeWithdrawn", "Privilege withdrawn"],
  ];
  const PAGE_SIZES = [25, 50, 100];
  // Every reason the CA records (revocation.ReasonNames), by the name an administrator reads: the revoke form offers
  // only REASONS, but Intune, the hourly sweeps and the CLI record others too.
  const REASON_LABELS = Object.assign(Object.fromEntries(REASONS), {
    cACompromise: "CA compromise", certificateHold: "Certificate hold", aACompromise: "AA compromise",
  });
  function reasonLabel(r) {
    return REASON_LABELS[r || "unspecified"] || r;
  }

  const state = {
    cfg: null,
    msal: null,
    account: null,
    session: null, // dev mode {token, expires}
    overview: null,
    me: Promise.resolve(null), // GET /api/certificates/me: the admin roles the CA grants the caller now (null: none known)
    busy: 0,
    // The id of the control a search or a change of page was made with: the list is drawn anew, and the focus goes
    // back to that control instead of falling to the document, where the next Tab would start at the top.
    refocus: "",
    // The hash of the last list of certificates shown (its search, filters and page): a certificate's "←
    // Certificates" leads back to it.
    list: "#/certificates",
  };

  const main = document.getElementById("main");

  // ---- DOM helpers -------------------------------------------------------------------------------------------
  // Characters a reader does not see but that change what is seen: bidi overrides and isolates, zero-width and
  // other format characters, default-ignorables, controls and line/paragraph separators. A device or REST caller
  // chooses its subject's free text, and "CN=\u202E1000-ecived" displays as "CN=device-0001" (reversing the text
  // after it too). visible writes each as ⟨U+XXXX⟩, so the admin reads what the certificate says.
  const HIDDEN = /[\p{Cf}\p{Default_Ignorable_Code_Point}\p{Zl}\p{Zp}\u0000-\u0008\u000B-\u001F\u007F-\u009F]/gu;
  function visible(s) {
    return String(s).replace(HIDDEN, (c) => "⟨U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "⟩");
  }

  // el builds an element; every text it is given (text, title and the string children) goes through visible.
  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "for") n.htmlFor = v;
      else if (k === "text") n.textContent = visible(v);
      else if (k === "title") n.title = visible(v);
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (v === true) n.setAttribute(k, "");
      else n.setAttribute(k, String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      n.append(kid instanceof Node ? kid : document.createTextNode(visible(kid)));
    }
    return n;
  }

  // setView replaces the page. A view that waits for the CA first shows a placeholder and, once answered, draws
  // itself only while that placeholder is still on the page (isConnected): the administrator may have moved on
  // meanwhile, and the page they chose stays.
  function setView(title, ...nodes) {
    main.replaceChildren(...nodes);
    document.title = visible(title) + " · Certificate console · azscep";
    main.setAttribute("aria-label", visible(title));
  }

  function focusMain() {
    const h = main.querySelector("h1");
    if (h) {
      h.setAttribute("tabindex", "-1");
      h.focus({ preventScroll: false });
    }
  }

  // time renders an ISO date in the browser's time zone, with UTC on hover (and for screen readers in the title).
  // A time of day names its zone ("Dec 7, 2026 5:10 PM GMT+1"): it is compared with logs in UTC and read off
  // screenshots from other zones, and the hover is out of reach on a touch screen. The date and the time of day
  // each stay on one line, and a narrow column breaks between them (a list puts the time under the date).
  const localDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const localTime = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit", timeZoneName: "short" });
  function time(iso) {
    if (!iso || iso.startsWith("0001-")) return el("span", { class: "muted", text: "—" });
    const d = new Date(iso);
    const utc = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
    return el("time", { datetime: d.toISOString(), title: utc, class: "when" }, el("span", {}, localDate.format(d)),
      " ", el("span", {}, localTime.format(d)));
  }

  // requesterName reads a REST requester as /api/csr records it ("oid:… upn:…", "oid:… username:…" for an account
  // without a UPN, "app:… oid:…" for an application) as the name an admin knows it by, and its object ID; any
  // other requester (a SCEP endpoint's) is its own name. Each form is matched whole: a username is the token's
  // preferred_username, which its user may change, and all of it is the name ("x upn:ceo@…" names no UPN).
  function requesterName(r) {
    let m = r.match(/^oid:(\S+) upn:(\S+)$/);
    if (m) return { name: m[2], oid: m[1] };
    m = r.match(/^oid:(\S+) username:([\s\S]+)$/);
    if (m) return { name: m[2], oid: m[1] };
    m = r.match(/^app:(\S+) oid:(\S+)$/);
    if (m) return { name: "application " + m[1], oid: m[2] };
    return { name: r };
  }

  // breakable is a name (a UPN, a host name, a device ID) that may wrap only after an "@", ".", "-" or "_": a <wbr>
  // after each, so the text, and what is copied, stays the name. A list's cell broke a UPN at whatever letter the
  // column ended ("alexandra.konstantinop" over "oulou.verwaltung@cont"); app.css (.breakable) keeps the parts whole.
  function breakable(s) {
    const out = [];
    let part = "";
    for (const c of String(s)) {
      part += c;
      if ("@.-_".includes(c)) {
        out.push(part, el("wbr"));
        part = "";
      }
    }
    if (part) out.push(part);
    return out;
  }

  // requester shows a requester by its name, with the full value on hover (and its name whole to select and copy).
  function requester(r) {
    if (!r) return "";
    return el("span", { class: "requester breakable", title: r }, breakable(requesterName(r).name));
  }

  // requesterFull shows a requester by its name and, on a line of its own, its object ID (the raw "oid:… upn:…"
  // wrapped over four lines of a certificate's page, the UPN last).
  function requesterFull(r) {
    if (!r) return "";
    const n = requesterName(r);
    return n.name === r ? r : el("span", {}, n.name, n.oid ? el("span", { class: "muted small requester-oid", text: "object ID " + n.oid }) : null);
  }

  // source names where a certificate was requested. /api/csr records its default profile's certificates under the
  // endpoint "api", whatever the profile is named, so those show the profile's name: the record's own, else the
  // overview's apiProfile.
  function source(c) {
    const kind = c.source === "scep" ? "SCEP" : c.source === "api" ? "REST" : c.source;
    let where = c.endpoint;
    if (c.source === "api" && c.endpoint === "api") where = c.profile || (state.overview && state.overview.apiProfile) || c.endpoint;
    return where ? `${kind} · ${where}` : kind;
  }

  function daysLeft(iso) {
    return Math.floor((new Date(iso).getTime() - Date.now()) / 86400000);
  }

  // expiry shows when a certificate expires and how long it has left; a revoked one has nothing left (its "364 days
  // left" in green read as a valid certificate), so it says so instead.
  function expiry(iso, status) {
    if (status === "revoked") return el("span", {}, time(iso), " ", el("span", { class: "pill bad", text: "revoked" }));
    const left = daysLeft(iso);
    const cls = left < 0 ? "bad" : left < 30 ? "warn" : "ok";
    const text = left < 0 ? "expired" : left === 0 ? "expires today" : `${left} days left`;
    return el("span", {}, time(iso), " ", el("span", { class: "pill " + cls, text }));
  }

  function badge(status) {
    return el("span", { class: "badge s-" + status, text: status });
  }

  function notice(kind, ...kids) {
    return el("div", { class: "notice " + kind, role: kind === "error" ? "alert" : "status" }, ...kids);
  }

  function dl(rows) {
    const list = el("dl", { class: "facts" });
    for (const [k, v] of rows) {
      if (v === undefined || v === null || v === "" || (Array.isArray(v) && v.length === 0)) continue;
      list.append(el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : String(v)));
    }
    return list;
  }

  function mono(s) {
    return el("code", { class: "mono", text: s });
  }

  // subjectParts is a subject DN to show in a narrow column: it may wrap after each RDN's comma (a <wbr>, so the
  // text, and what is copied, stays the DN) and, inside an RDN, after an "@", ".", "-" or "_" (breakable), so a
  // column as wide as the longest such part need not cut a word. Without it "contoso.example,OU=Platform" was one
  // word to the browser, wider than the column, and cut anywhere.
  function subjectParts(dn) {
    if (!dn) return ["(empty subject)"];
    const out = [];
    let part = "";
    for (let i = 0; i < dn.length; i++) {
      part += dn[i];
      if (dn[i] === "\\" && i + 1 < dn.length) part += dn[++i];
      else if (dn[i] === ",") {
        out.push(breakable(part), el("wbr"));
        part = "";
      }
    }
    if (part) out.push(breakable(part));
    return out.flat();
  }

  // serialCell is a list's cell for a serial, which it shows whole: on one line where the column has room, else in
  // lines of 12 characters (app.css .list .serial); wrapped at whatever letter the column ended, two halves of a
  // serial read as two numbers. The element's text is the serial alone (no spaces or elements inserted), so a
  // double-click selects and copies all of it and a screen reader reads it; it is the hover text too.
  function serialCell(s) {
    return el("td", { "data-label": "Serial", class: "serial-cell" }, el("code", { class: "mono serial", title: s, text: s }));
  }

  function download(name, type, data) {
    const url = URL.createObjectURL(new Blob([data], { type }));
    const a = el("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function pemToDer(pem) {
    const b64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function firstPem(text) {
    const m = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/);
    return m ? m[0] + "\n" : "";
  }

  // ---- reading an issued certificate ------------------------------------------------------------------------
  // readCertificate reads what an administrator checks in a certificate just issued (its subject, SANs and
  // validity) from its DER: /api/csr answers with the certificate only (PEM, DER or PKCS#7, no JSON), and a caller
  // with CSR.Request.Db alone may not read the record. The subject is written as the CA's records write it (Go's
  // pkix.Name, dnString), the SANs as "dns:…", "email:…", "upn:…", "uri:…" and "ip:…" (policy.csr's names).
  // It throws on a certificate it cannot read.
  const DN_NAMES = { "2.5.4.3": "CN", "2.5.4.5": "SERIALNUMBER", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST",
    "2.5.4.9": "STREET", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.17": "POSTALCODE" };
  const OID_SAN = "2.5.29.17";
  const OID_UPN = "1.3.6.1.4.1.311.20.2.3";

  function derNode(buf, pos, end) {
    if (pos + 2 > end) throw new Error("truncated DER");
    const tag = buf[pos];
    let len = buf[pos + 1];
    let p = pos + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n < 1 || n > 4 || p + n > end) throw new Error("bad DER length");
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[p++];
    }
    if (p + len > end) throw new Error("truncated DER");
    return { tag, pos, start: p, end: p + len };
  }

  function derKids(buf, node) {
    const out = [];
    for (let p = node.start; p < node.end;) {
      const k = derNode(buf, p, node.end);
      out.push(k);
      p = k.end;
    }
    return out;
  }

  function derOID(buf, n) {
    const parts = [];
    let v = 0;
    for (let i = n.start; i < n.end; i++) {
      v = v * 128 + (buf[i] & 0x7f);
      if (!(buf[i] & 0x80)) {
        if (!parts.length) parts.push(v < 80 ? Math.floor(v / 40) : 2, v < 80 ? v % 40 : v - 80);
        else parts.push(v);
        v = 0;
      }
    }
    return parts.join(".");
  }

  function derString(buf, n) {
    const b = buf.subarray(n.start, n.end);
    switch (n.tag) {
      case 0x1e: { // BMPString: UTF-16BE
        let s = "";
        for (let i = 0; i + 1 < b.length; i += 2) s += String.fromCharCode((b[i] << 8) | b[i + 1]);
        return s;
      }
      case 0x1c: { // UniversalString: UTF-32BE
        let s = "";
        for (let i = 0; i + 3 < b.length; i += 4) s += String.fromCodePoint(((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0);
        return s;
      }
      case 0x14: // T61String, read as Latin-1 (as Go does)
        return String.fromCharCode(...b);
      default: // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        return new TextDecoder().decode(b);
    }
  }

  function derTime(buf, n) {
    let s = derString(buf, n);
    if (n.tag === 0x17) s = (Number(s.slice(0, 2)) < 50 ? "20" : "19") + s; // UTCTime: two-digit year (RFC 5280)
    const m = s.match(/^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/);
    if (!m) throw new Error("bad time " + s);
    return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`;
  }

  function hex(b) {
    return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  }

  // dnString writes a Name as the CA's records do (Go's pkix.Name.String of the parsed name): the names it knows
  // last first in its fixed order (SERIALNUMBER, CN, OU, O, POSTALCODE, STREET, L, ST, C; several values of one
  // as one RDN joined with "+", only the last CN and SERIALNUMBER), special characters escaped, then any other
  // attribute as its OID and the hex DER of its value (a string re-encoded as Go encodes one).
  const DN_ORDER = ["2.5.4.6", "2.5.4.8", "2.5.4.7", "2.5.4.9", "2.5.4.17", "2.5.4.10", "2.5.4.11", "2.5.4.3", "2.5.4.5"];
  const STRING_TAGS = [0x0c, 0x12, 0x13, 0x14, 0x16, 0x1a, 0x1c, 0x1e];
  function derLength(n) {
    if (n < 128) return [n];
    const b = [];
    for (; n > 0; n = Math.floor(n / 256)) b.unshift(n % 256);
    return [0x80 | b.length, ...b];
  }
  function dnEscape(v) {
    const chars = [...v];
    return chars.map((c, i) => ",+\"\\<>;".includes(c) || (c === " " && (i === 0 || i === chars.length - 1)) || (c === "#" && i === 0) ? "\\" + c : c).join("");
  }
  function dnString(buf, name) {
    const known = {}, other = [];
    for (const rdn of derKids(buf, name)) {
      for (const atv of derKids(buf, rdn)) {
        const [type, value] = derKids(buf, atv);
        const oid = derOID(buf, type);
        const isString = STRING_TAGS.includes(value.tag);
        if (DN_NAMES[oid]) {
          if (!isString) continue;
          const v = derString(buf, value);
          if (oid === "2.5.4.3" || oid === "2.5.4.5") known[oid] = [v];
          else (known[oid] = known[oid] || []).push(v);
          continue;
        }
        let der = buf.subarray(value.pos, value.end);
        if (isString) {
          const s = derString(buf, value);
          const bytes = new TextEncoder().encode(s);
          der = [/^[A-Za-z0-9 '()+,\-./:=?*&]*$/.test(s) ? 0x13 : 0x0c, ...derLength(bytes.length), ...bytes];
        }
        other.push(oid + "=#" + hex(der));
      }
    }
    const rdns = other.slice();
    for (const oid of DN_ORDER) {
      const vs = (known[oid] || []).filter((v) => v !== "" || (oid !== "2.5.4.3" && oid !== "2.5.4.5"));
      if (vs.length) rdns.push(vs.map((v) => DN_NAMES[oid] + "=" + dnEscape(v)).join("+"));
    }
    return rdns.reverse().join(",");
  }

  function ipString(b) {
    if (b.length === 4) return [...b].join(".");
    if (b.length !== 16) return "#" + hex(b);
    const g = [];
    for (let i = 0; i < 16; i += 2) g.push((b[i] << 8) | b[i + 1]);
    // The longest run of two or more zero groups becomes "::" (RFC 5952, as Go writes it).
    let best = -1, bestLen = 1;
    for (let i = 0; i < 8;) {
      let j = i;
      while (j < 8 && g[j] === 0) j++;
      if (j - i > bestLen) [best, bestLen] = [i, j - i];
      i = j > i ? j : i + 1;
    }
    const h = g.map((x) => x.toString(16));
    return best < 0 ? h.join(":") : h.slice(0, best).join(":") + "::" + h.slice(best + bestLen).join(":");
  }

  function sanList(buf, octets) {
    const seq = derNode(buf, octets.start, octets.end);
    return derKids(buf, seq).map((gn) => {
      const b = buf.subarray(gn.start, gn.end);
      switch (gn.tag) {
        case 0x81: return "email:" + new TextDecoder().decode(b);
        case 0x82: return "dns:" + new TextDecoder().decode(b);
        case 0x86: return "uri:" + new TextDecoder().decode(b);
        case 0x87: return "ip:" + ipString(b);
        case 0xa0: {
          const [type, value] = derKids(buf, gn);
          const oid = derOID(buf, type);
          if (oid === OID_UPN && value) return "upn:" + derString(buf, derNode(buf, value.start, value.end));
          return "otherName:" + oid;
        }
        default: return "name [" + (gn.tag & 0x1f) + "]";
      }
    });
  }

  function readCertificate(der) {
    const cert = derNode(der, 0, der.length);
    const tbs = derKids(der, derKids(der, cert)[0]);
    const f = tbs[0].tag === 0xa0 ? tbs.slice(1) : tbs; // serial, signature, issuer, validity, subject, key, …
    const [notBefore, notAfter] = derKids(der, f[3]).map((n) => derTime(der, n));
    let sans = [];
    const exts = f.slice(6).find((n) => n.tag === 0xa3);
    if (exts) {
      for (const ext of derKids(der, derNode(der, exts.start, exts.end))) {
        const parts = derKids(der, ext);
        if (derOID(der, parts[0]) === OID_SAN) sans = sanList(der, parts[parts.length - 1]);
      }
    }
    return { subject: dnString(der, f[4]), issuer: dnString(der, f[2]), notBefore, notAfter, sans };
  }

  // ---- progress --------------------------------------------------------------------------------------------
  function busy(on) {
    state.busy += on ? 1 : -1;
    const p = document.getElementById("progress");
    p.classList.toggle("on", state.busy > 0);
    document.getElementById("progress-text").textContent = state.busy > 0 ? "Loading…" : "";
    main.setAttribute("aria-busy", state.busy > 0 ? "true" : "false");
  }

  function loading(text) {
    return el("p", { class: "loading", role: "status" }, el("span", { class: "spinner", "aria-hidden": "true" }), text || "Loading…");
  }

  // ---- tokens ----------------------------------------------------------------------------------------------
  function b64url(bytes) {
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function claims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch {
      return {};
    }
  }

  function loadSession() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      if (s && s.token && s.expires > Date.now() + 30000) return s;
    } catch {
      /* a damaged entry is a signed-out session */
    }
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }

  async function devSignIn() {
    const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    const st = b64url(crypto.getRandomValues(new Uint8Array(16)));
    const hash = location.hash && location.hash !== "#/signin" ? location.hash : "#/certificates";
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier, state: st, hash }));
    const u = new URL(state.cfg.authorize, location.origin);
    u.search = new URLSearchParams({
      response_type: "code",
      client_id: state.cfg.clientId,
      redirect_uri: redirectURI(),
      scope: state.cfg.scope,
      state: st,
      code_challenge: b64url(new Uint8Array(digest)),
      code_challenge_method: "S256",
    }).toString();
    location.assign(u.toString());
  }

  function redirectURI() {
    return location.origin + location.pathname;
  }

  // devCompleteSignIn redeems ?code= after the dev issuer redirected back.
  async function devCompleteSignIn() {
    const q = new URLSearchParams(location.search);
    if (!q.has("code") && !q.has("error")) return;
    const saved = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    sessionStorage.removeItem(PKCE_KEY);
    history.replaceState(null, "", location.pathname + ((saved && saved.hash) || "#/certificates"));
    if (!saved || q.get("state") !== saved.state) throw new Error("The sign-in answer did not match this tab's request; sign in again.");
    const body = new URLSearchParams({
      grant_type: "authorization_code",
      code: q.get("code"),
      redirect_uri: redirectURI(),
      client_id: state.cfg.clientId,
      code_verifier: saved.verifier,
    });
    const resp = await fetch(state.cfg.token, { method: "POST", body, credentials: "omit", cache: "no-store" });
    const tok = await resp.json().catch(() => ({}));
    if (!resp.ok || !tok.access_token) throw new Error("Sign-in failed: " + (tok.error_description || resp.status));
    state.session = { token: tok.access_token, expires: Date.now() + tok.expires_in * 1000 };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  }

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const s = el("script", { src });
      s.addEventListener("load", resolve);
      s.addEventListener("error", () => reject(new Error("could not load " + src)));
      document.head.append(s);
    });
  }

  async function entraInit() {
    await loadScript("vendor/msal-browser.min.js");
    const msal = window.msal;
    state.msal = new msal.PublicClientApplication({
      auth: { clientId: state.cfg.clientId, authority: state.cfg.authority, redirectUri: redirectURI(), postLogoutRedirectUri: redirectURI() },
      cache: { cacheLocation: "sessionStorage" },
    });
    await state.msal.initialize();
    const res = await state.msal.handleRedirectPromise();
    state.account = (res && res.account) || state.msal.getAllAccounts()[0] || null;
    if (state.account) state.msal.setActiveAccount(state.account);
  }

  // token returns a bearer token for the API, or null when the user must sign in (again).
  async function token() {
    if (state.cfg.mode === "dev") {
      state.session = loadSession();
      return state.session ? state.session.token : null;
    }
    if (state.cfg.mode !== "entra" || !state.account) return null;
    try {
      // The cached token, else the refresh token, never MSAL's hidden iframe: this page is the redirect URI and
      // forbids framing (frame-ancestors 'none'), so the iframe could only time out, an error where a sign-in is
      // due. An expired refresh token is then InteractionRequired: sign in again.
      const r = await state.msal.acquireTokenSilent({ scopes: [state.cfg.scope], account: state.account,
        cacheLookupPolicy: window.msal.CacheLookupPolicy.AccessTokenAndRefreshToken });
      return r.accessToken;
    } catch (e) {
      if (e instanceof window.msal.InteractionRequiredAuthError) return null;
      throw e;
    }
  }

  async function signIn() {
    if (state.cfg.mode === "dev") return devSignIn();
    if (state.cfg.mode === "entra") return state.msal.loginRedirect({ scopes: [state.cfg.scope] });
  }

  function signOut() {
    sessionStorage.removeItem(SESSION_KEY);
    state.session = null;
    if (state.cfg.mode === "entra" && state.account) {
      state.msal.logoutRedirect({ account: state.account });
      return;
    }
    location.hash = "#/signin";
    render();
  }

  // ---- API -------------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, problem, role, retryAfter) {
      super((problem && (problem.detail || problem.title)) || "HTTP " + status);
      this.status = status;
      this.problem = problem || {};
      this.role = role;
      this.retryAfter = retryAfter || ""; // the answer's Retry-After header, as sent
    }
  }

  // retryWhen reads a Retry-After value (delay-seconds or an HTTP date) as "when to try again", or null.
  function retryWhen(value) {
    const v = (value || "").trim();
    if (/^\d+$/.test(v)) {
      const s = Number(v);
      if (s < 120) return [`Try again in ${s} second${s === 1 ? "" : "s"}.`];
      const m = Math.round(s / 60);
      return m < 120 ? [`Try again in about ${m} minutes.`] : ["Try again after ", time(new Date(Date.now() + s * 1000).toISOString()), "."];
    }
    const at = v ? Date.parse(v) : NaN;
    if (Number.isNaN(at)) return null;
    return at <= Date.now() ? ["Try again now."] : ["Try again after ", time(new Date(at).toISOString()), "."];
  }

  // canManage: whether the CA lets the signed-in caller change anything (revoke, start a sync). The CA refuses such
  // a change from anyone else whatever the page shows; the page only does not offer it.
  async function canManage() {
    const me = await state.me;
    return !!(me && me.canManage);
  }

  // api calls the CA; role names the app role the call needs, for the message when the CA answers 403: a change
  // needs Certificates.Manage, a read Certificates.Read (which Manage includes).
  async function api(path, opts = {}, role) {
    role = role || (opts.method && opts.method !== "GET" ? ROLE_MANAGE : ROLE_READ);
    const tok = await token();
    if (!tok) throw new ApiError(401, { code: "signed_out", detail: "not signed in" }, role);
    const headers = Object.assign({ Authorization: "Bearer " + tok }, opts.headers || {});
    busy(true);
    let resp;
    try {
      resp = await fetch(path, Object.assign({}, opts, { headers, credentials: "omit", cache: "no-store" }));
    } catch {
      throw new ApiError(0, { code: "network", detail: "the CA could not be reached" }, role);
    } finally {
      busy(false);
    }
    if (resp.ok) return resp;
    let problem = {};
    try {
      problem = await resp.json();
    } catch {
      /* not problem+json */
    }
    throw new ApiError(resp.status, problem, role, resp.headers.get("Retry-After"));
  }

  async function apiJSON(path, opts, role) {
    const resp = await api(path, opts, role);
    return resp.json();
  }

  function whoAmI() {
    if (state.cfg.mode === "dev" && state.session) {
      const c = claims(state.session.token);
      return { name: c.name || c.preferred_username || "developer", upn: c.preferred_username || c.upn || "", roles: c.roles || [] };
    }
    if (state.account) {
      const c = state.account.idTokenClaims || {};
      return { name: state.account.name || state.account.username, upn: state.account.username, roles: c.roles || [] };
    }
    return null;
  }

  // errorView explains a failed call: what happened and what to do next.
  function errorView(err, retry) {
    if (!(err instanceof ApiError)) {
      return notice("error", el("strong", { text: "Something went wrong. " }), String(err.message || err),
        retry ? el("button", { type: "button", class: "ghost", onclick: retry, text: "Try again" }) : null);
    }
    const code = err.problem.code || "";
    if (err.status === 401 && code === "sessions_revoked") {
      // Entra back-dates a token's issue time by five minutes: a sign-in right after the revocation is refused too.
      return notice("error", el("h2", { text: "Your sessions were revoked" }),
        el("p", { text: "Your sessions were revoked (or your password changed) after you signed in. Wait a few minutes, then sign in again." }),
        el("button", { type: "button", class: "primary", onclick: () => { sessionStorage.removeItem(SESSION_KEY); signIn(); }, text: "Sign in again" }));
    }
    if (err.status === 403 && code === "account_disabled") {
      return notice("error", el("h2", { text: "Your account is disabled" }),
        el("p", { text: "The directory says your account is disabled or no longer exists, so the CA does not act on your sign-in. Ask an administrator." }));
    }
    if (err.status === 403 && (code === "guest_not_allowed" || code === "client_app_not_allowed")) {
      return notice("error", el("h2", { text: code === "guest_not_allowed" ? "Guest accounts are not admitted" : "This application is not allowed" }),
        el("p", { class: "muted" }, "The CA answered 403 ", el("code", { text: code }), err.problem.detail ? ": " + err.problem.detail : ""));
    }
    if (err.status === 401) {
      return notice("error", el("h2", { text: code === "signed_out" ? "You are signed out" : "Your sign-in has expired" }),
        el("p", { text: code === "signed_out" ? "Sign in to continue." : "The CA did not accept your token any more (" + (err.problem.detail || "expired") + "). Sign in again to continue." }),
        el("button", { type: "button", class: "primary", onclick: () => { sessionStorage.removeItem(SESSION_KEY); signIn(); }, text: "Sign in again" }));
    }
    if (err.status === 403) {
      const me = whoAmI();
      const wanted = err.role === ROLE_READ ? ROLE_READ + " or " + ROLE_MANAGE : err.role;
      return notice("error", el("h2", { text: "Missing role: " + wanted }),
        el("p", {}, "You are signed in as ", el("strong", { text: (me && (me.upn || me.name)) || "this user" }),
          code === "role_removed" ? ", but an administrator has taken from your account the app role its sign-in carries; " : ", but your account does not hold the app role ",
          el("code", { text: wanted }), ", which this " + (err.role === ROLE_READ ? "page" : "action") + " needs."),
        el("p", { text: "Ask an administrator to assign it to you: Entra admin center → Enterprise applications → the azscep API → Users and groups." }),
        el("p", { class: "muted" }, "The CA answered 403 ", el("code", { text: code || "forbidden" }), err.problem.detail ? ": " + err.problem.detail : ""));
    }
    // Otherwise: what the console makes of the status, then the CA's own answer (its code and detail, as text) and,
    // when the answer carried Retry-After, when to try again.
    const parts = [];
    if (err.status === 0) parts.push(el("p", { text: "The CA could not be reached. Check your connection and try again." }));
    else {
      if (err.status === 503) parts.push(el("p", { text: "A service the CA depends on (Table Storage, Key Vault, Entra or Microsoft Graph) is unavailable." }));
      else if (err.status === 404 && code === "api_disabled") parts.push(el("p", { text: "The admin API is not configured on this CA (set AZSCEP_API_TENANT_ID)." }));
      const said = err.problem.detail || err.problem.title;
      parts.push(el("p", { class: "answer" }, "The CA answered " + err.status, code ? el("span", {}, " ", el("code", { text: code })) : null, said ? ": " + said : "."));
      const when = retryWhen(err.retryAfter);
      if (when) parts.push(el("p", { class: "retry-after" }, ...when));
      else if (err.status === 503) parts.push(el("p", { text: "Try again in a moment." }));
    }
    return notice("error", ...parts, retry ? el("button", { type: "button", class: "ghost", onclick: retry, text: "Try again" }) : null);
  }

  // ---- header ----------------------------------------------------------------------------------------------
  // showHeader offers the sections, the user and Sign out (and, on a narrow window, the Menu button that folds
  // them) only to a signed-in admin.
  function showHeader(on) {
    for (const id of ["nav", "user", "menu"]) document.getElementById(id).hidden = !on;
    if (!on) setMenu(false);
  }

  // setMenu opens or closes the narrow window's menu (on a wide window the sections are always shown).
  function setMenu(open) {
    document.querySelector("header.top").classList.toggle("open", open);
    document.getElementById("menu").setAttribute("aria-expanded", String(open));
  }

  // ---- router ----------------------------------------------------------------------------------------------
  function parseHash() {
    const h = location.hash.replace(/^#\/?/, "");
    const [path, query] = h.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { view: parts[0] || "certificates", arg: parts[1], params: new URLSearchParams(query || "") };
  }

  function go(hash) {
    if (location.hash === hash) render();
    else location.hash = hash;
  }

  async function render() {
    const route = parseHash();
    const refocus = state.refocus;
    state.refocus = "";
    // A renewal that failed (Entra or the network unreachable) is not a sign-out: the sign-in page would send the
    // admin to the same unreachable Entra. The page says so and tries again on request (or signs in, should the
    // failure last).
    let signedIn;
    try {
      signedIn = !!(await token());
    } catch (e) {
      showHeader(false);
      return setView("Sign-in not renewed", el("section", { class: "card narrow" }, el("h1", { text: "Your sign-in could not be renewed" }),
        notice("error", el("p", { text: "Microsoft Entra ID could not be reached to renew your sign-in (" + (e.errorCode || e.message || e) + "). Check your connection and try again." }),
          el("div", { class: "actions" }, el("button", { type: "button", class: "primary", onclick: () => render().catch(showFatal), text: "Try again" }),
            el("button", { type: "button", class: "ghost", onclick: () => signIn().catch(showFatal), text: "Sign in again" })))));
    }
    showHeader(signedIn);
    const roleBadge = document.getElementById("user-role");
    roleBadge.textContent = "";
    state.me = Promise.resolve(null);
    if (signedIn && state.cfg.mode !== "disabled") {
      // What the CA grants now (the token's admin roles as the directory still confirms them), not what the token
      // says: the page offers only what the CA will do. Asked beside the view's own calls, not before them.
      const asked = apiJSON("../certificates/me").catch(() => null);
      state.me = asked;
      asked.then((m) => {
        if (state.me !== asked) return;
        const role = !m ? "" : m.canManage ? ROLE_MANAGE : (m.roles || []).includes(ROLE_READ) ? ROLE_READ + " (read only)" : "";
        roleBadge.textContent = role;
        roleBadge.title = role ? "Your admin role, as the CA sees it now" : "";
      });
    }
    if (signedIn) {
      const me = whoAmI();
      document.getElementById("user-name").textContent = me ? visible(me.upn || me.name) : "";
      // The name may be cut short in the header: the hover says it in full.
      document.getElementById("user-name").title = visible((me ? (me.upn || me.name) + "\n" : "") + (me && me.roles.length ? "Roles: " + me.roles.join(", ") : "No app roles"));
    }
    for (const a of document.querySelectorAll("#nav a")) {
      const cur = a.dataset.view === route.view || (route.view === "certificate" && a.dataset.view === "certificates");
      if (cur) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (state.cfg.mode === "disabled") return viewDisabled();
    if (!signedIn) return viewSignIn();
    switch (route.view) {
      case "certificate":
        return viewCertificate(route.arg);
      case "request":
        return viewRequest();
      case "overview":
        return viewOverview();
      case "operations":
        return viewOperations();
      default:
        return viewCertificates(route.params, refocus);
    }
  }

  // ---- views -----------------------------------------------------------------------------------------------
  function viewDisabled() {
    setView("Not configured",
      el("section", { class: "card narrow" }, el("h1", { text: "The admin API is not configured" }),
        el("p", { text: "Set AZSCEP_API_TENANT_ID and AZSCEP_API_AUDIENCES (see README, REST enrollment) to sign in to the console." })));
  }

  function viewSignIn() {
    const dev = state.cfg.mode === "dev";
    setView("Sign in",
      el("section", { class: "card narrow signin" },
        el("h1", { text: "Sign in to the certificate console" }),
        el("p", { text: "Search, inspect and revoke the certificates this CA issued, request server certificates, and watch the Intune revocation sync." }),
        dev ? notice("info", el("p", {}, el("strong", { text: "Local mode. " }), "You sign in with the development token issuer: choose a user and app roles, no password.")) : null,
        el("button", { type: "button", class: "primary big", id: "signin", onclick: () => signIn().catch(showFatal), text: dev ? "Sign in with the development issuer" : "Sign in with Microsoft Entra ID" }),
        el("p", { class: "muted small", text: "Searching and reading need the app role Certificates.Read or Certificates.Manage; revoking and starting a sync need Certificates.Manage; requesting certificates needs CSR.Request.Db." })));
    focusMain();
  }

  // --- certificates: search and paging
  function looksLikeSerial(q) {
    const s = q.replace(/[:\s]/g, "").replace(/^0x/i, "");
    return s.length >= 6 && s.length <= 40 && /^[0-9a-f]+$/i.test(s) ? s.toUpperCase().replace(/^0+/, "") : "";
  }

  function field(label, input, hint) {
    const id = input.id;
    return el("div", { class: "field" }, el("label", { for: id, text: label }), input, hint ? el("small", { id: id + "-hint", class: "hint", text: hint }) : null);
  }

  function select(id, options, value) {
    const s = el("select", { id, name: id });
    for (const [v, label] of options) s.append(el("option", { value: v, text: label, selected: v === value }));
    return s;
  }

  async function endpointOptions() {
    const opts = [["", "Any"]];
    const ov = await overview().catch(() => null);
    if (ov) {
      for (const e of ov.endpoints || []) opts.push([e.name, "SCEP: " + e.name]);
      // /api/csr records its default profile's certificates under the endpoint "api", whatever the profile is
      // named, and a chosen profile's under the profile's name.
      const names = ov.apiProfiles && ov.apiProfiles.length ? ov.apiProfiles : ov.apiProfile ? [ov.apiProfile] : [];
      names.forEach((n, i) => opts.push([i === 0 ? "api" : n, "REST: " + n + (i === 0 && names.length > 1 ? " (default)" : "")]));
    }
    return opts;
  }

  async function overview(force) {
    if (!state.overview || force) state.overview = await apiJSON("../certificates/overview");
    return state.overview;
  }

  async function viewCertificates(params, refocus) {
    const p = (k) => params.get(k) || "";
    const q = el("input", { id: "q", name: "q", type: "search", value: p("q"), placeholder: "e.g. device-0001, alice@contoso.com or a serial", "aria-describedby": "q-hint", autocomplete: "off" });
    const endpoint = select("endpoint", [["", "Any"]].concat(p("endpoint") ? [[p("endpoint"), p("endpoint")]] : []), p("endpoint"));
    // On a phone the filters besides the name fold behind a button (app.css): unfolded they took the whole first
    // screen, and the results began below it. They are unfolded while any of them is set.
    const FILTERS = ["status", "source", "endpoint", "device", "requester", "since", "until", "limit"];
    const set = FILTERS.filter((k) => p(k) && !(k === "limit" && p(k) === "25")).length;
    const toggle = el("button", { type: "button", class: "ghost filters-toggle", id: "filters-toggle", "aria-controls": "filters",
      "aria-expanded": String(set > 0), text: set ? `Filters (${set} set)` : "Filters" });
    const form = el("form", { class: "search" + (set ? " open" : ""), role: "search", "aria-label": "Search certificates" },
      el("div", { class: "grid" },
        field("Serial, name or UPN", q, "A serial opens that certificate; anything else matches the subject or a SAN."),
        el("div", { class: "more", id: "filters" },
        field("Status", select("status", [["", "Any"], ["issued", "Issued"], ["revoked", "Revoked"], ["pending", "Pending"], ["abandoned", "Abandoned"]], p("status"))),
        field("Source", select("source", [["", "Any"], ["scep", "SCEP"], ["api", "REST /api/csr"]], p("source"))),
        field("Endpoint or profile", endpoint),
        field("Device ID", el("input", { id: "device", name: "device", value: p("device"), autocomplete: "off" })),
        field("Requester", el("input", { id: "requester", name: "requester", value: p("requester"), autocomplete: "off" })),
        field("Issued from", el("input", { id: "since", name: "since", type: "date", value: p("since") })),
        field("Issued before", el("input", { id: "until", name: "until", type: "date", value: p("until") })),
        field("Per page", select("limit", PAGE_SIZES.map((n) => [String(n), String(n)]), p("limit") || "25")))),
      el("div", { class: "actions" },
        el("button", { type: "submit", class: "primary", id: "search-button", text: "Search" }),
        el("button", { type: "button", class: "ghost", onclick: () => { state.refocus = "q"; go("#/certificates"); }, text: "Clear" }),
        toggle));
    toggle.addEventListener("click", () => {
      const open = !form.classList.contains("open");
      form.classList.toggle("open", open);
      toggle.setAttribute("aria-expanded", String(open));
      if (open) document.getElementById("status").focus();
    });
    // The results are not a live region (a screen reader would read the whole table out after every search): the
    // count is announced instead, and errors are alerts of their own.
    const results = el("div", { id: "results" });
    const said = el("p", { id: "results-status", class: "visually-hidden", role: "status" });
    setView("Certificates", el("h1", { text: "Certificates" }), form, said, results);
    const again = refocus && document.getElementById(refocus);
    if (again && form.contains(again)) again.focus();
    else if (!refocus) focusMain(); // a new visit, like every view's; a search or a page change keeps its control

    // The choices go into this view's own select, and only while it is on the page: a late answer (a failed one
    // has "Any" only) must not replace the choices, and the filter, of the view the admin moved on to.
    endpointOptions().then((opts) => {
      if (!endpoint.isConnected) return;
      const cur = endpoint.value;
      endpoint.replaceChildren(...opts.map(([v, l]) => el("option", { value: v, text: l, selected: v === cur })));
    });

    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      state.refocus = form.contains(document.activeElement) ? document.activeElement.id : "";
      const f = new FormData(form);
      const out = new URLSearchParams();
      for (const [k, v] of f.entries()) if (v && !(k === "limit" && v === "25")) out.set(k, String(v).trim());
      const hash = "#/certificates" + (out.toString() ? "?" + out.toString() : "");
      go(hash);
    });

    const query = new URLSearchParams();
    const serial = looksLikeSerial(p("q"));
    if (p("q") && serial && !params.get("continuation")) {
      results.replaceChildren(loading("Looking up serial " + serial + "…"));
      try {
        await api("../certificates/" + encodeURIComponent(serial));
        if (!results.isConnected) return;
        // Replace the search entry, so Back returns to where the search started rather than bouncing here again.
        return location.replace("#/certificate/" + serial);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) return results.replaceChildren(errorView(e, () => render()));
      }
    }
    if (p("q")) query.set("name", p("q"));
    for (const k of ["status", "source", "endpoint", "device", "requester"]) if (p(k)) query.set(k, p(k));
    if (p("since")) query.set("since", new Date(p("since") + "T00:00:00").toISOString());
    if (p("until")) query.set("until", new Date(p("until") + "T00:00:00").toISOString());
    query.set("limit", p("limit") || "25");
    if (p("continuation")) query.set("continuation", p("continuation"));

    // A serial's search opened its certificate above; this one is a list to come back to.
    state.list = location.hash.startsWith("#/certificates") ? location.hash : "#/certificates";
    results.replaceChildren(loading("Searching…"));
    let page;
    try {
      page = await apiJSON("../certificates?" + query.toString());
    } catch (e) {
      return results.replaceChildren(errorView(e, () => render()));
    }
    if (!results.isConnected) return;
    results.replaceChildren(resultsTable(page, params));
    said.textContent = results.querySelector("caption, h2").textContent;
    if (refocus === "prev-page" || refocus === "next-page") {
      // The button pressed, else the other one (past the last page "Next" is disabled), else the list's heading.
      const pager = [refocus, refocus === "next-page" ? "prev-page" : "next-page"].map((id) => document.getElementById(id)).find((b) => b && !b.disabled);
      const head = results.querySelector("h2");
      if (pager) pager.focus();
      else if (head) {
        head.setAttribute("tabindex", "-1");
        head.focus();
      }
    }
  }

  // The paging state is in the URL, so Back, Forward and a reload show the page's own number and buttons: the
  // hash holds the page's continuation token and, as repeated back=, those of the pages before it (page 1's is
  // empty).
  function resultsTable(page, params) {
    const backs = params.getAll("back");
    const pageNo = backs.length + 1;
    if (!page.items.length) {
      return el("div", { class: "empty" }, el("h2", { text: pageNo > 1 ? "No more certificates" : "No certificates match" }),
        el("p", { text: pageNo > 1 ? "This was the last page." : "Try fewer filters, part of a name, or a full serial." }));
    }
    const table = el("table", { class: "list" },
      el("caption", { text: `Page ${pageNo}: ${page.items.length} certificate${page.items.length === 1 ? "" : "s"}` + (page.continuation ? ", more on the next page" : "") }),
      el("thead", {}, el("tr", {}, ["Subject", "Serial", "Status", "Source", "Requester / device", "Issued", "Expires"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, page.items.map((c) => el("tr", {},
        el("td", { "data-label": "Subject" }, el("a", { href: "#/certificate/" + encodeURIComponent(c.serial), class: "subject" }, subjectParts(c.subject)),
          c.sans && c.sans.length ? sanSummary(c.sans) : null),
        serialCell(c.serial),
        el("td", { "data-label": "Status" }, badge(c.status), c.status === "revoked" ? revokedNote(c) : null),
        el("td", { "data-label": "Source" }, source(c)),
        el("td", { "data-label": "Requester" }, requester(c.requester), c.deviceId ? el("div", { class: "muted small breakable", title: c.deviceId }, "device ", breakable(c.deviceId)) : null),
        el("td", { "data-label": "Issued" }, time(c.notBefore)),
        el("td", { "data-label": "Expires" }, time(c.notAfter))))));
    const prev = el("button", { type: "button", class: "ghost", id: "prev-page", disabled: pageNo === 1, text: "← Previous page" });
    const next = el("button", { type: "button", class: "ghost", id: "next-page", disabled: !page.continuation, text: "Next page →" });
    prev.addEventListener("click", () => {
      state.refocus = "prev-page";
      const p = new URLSearchParams(params);
      const earlier = backs.slice(0, -1);
      const back = backs[backs.length - 1];
      p.delete("back");
      if (back) p.set("continuation", back);
      else p.delete("continuation");
      for (const b of earlier) p.append("back", b);
      go("#/certificates?" + p.toString());
    });
    next.addEventListener("click", () => {
      state.refocus = "next-page";
      const p = new URLSearchParams(params);
      p.set("continuation", page.continuation);
      p.append("back", params.get("continuation") || "");
      go("#/certificates?" + p.toString());
    });
    return el("div", {}, el("div", { class: "table-wrap" }, table), el("nav", { class: "pager", "aria-label": "Pages" }, prev, el("span", { class: "muted", text: "Page " + pageNo }), next));
  }

  // revokedNote says under a list row's "revoked" badge why and when: a revoked row looked like any other but for
  // the badge's colour, and telling a key compromise from a superseded certificate took opening each.
  function revokedNote(c) {
    return el("div", { class: "muted small revoked-note" }, el("span", { class: "reason", text: reasonLabel(c.revocationReason) }), " ", time(c.revokedAt));
  }

  // sanSummary shows a list row's first SANs and how many more there are (all of them on hover and on the
  // certificate's own page): a server certificate's dozens of names would make its row a screenful. Each SAN is a
  // line of its own, cut with an ellipsis where the column is narrower (app.css .sans): run together, three long
  // host names wrapped over six lines of a column that also holds the subject.
  const SANS_SHOWN = 3;
  function sanSummary(sans) {
    const more = sans.length - SANS_SHOWN;
    return el("div", { class: "muted small sans", title: sans.join("\n") },
      sans.slice(0, SANS_SHOWN).map((n, i) => el("span", { text: n + (i < Math.min(sans.length, SANS_SHOWN) - 1 || more > 0 ? ", " : "") })),
      more > 0 ? el("span", { text: `and ${more} more` }) : null);
  }

  // --- one certificate
  function crumbs() {
    return el("p", { class: "crumbs" }, el("a", { href: state.list, text: "← Certificates" }));
  }

  // viewCertificate shows the certificate and returns its record, or null when it could not be read.
  async function viewCertificate(serial) {
    const wait = loading();
    setView("Certificate " + serial, crumbs(), wait);
    let c;
    try {
      c = await apiJSON("../certificates/" + encodeURIComponent(serial));
    } catch (e) {
      if (!wait.isConnected) return null;
      const err = e instanceof ApiError && e.status === 404
        ? notice("error", el("h2", { text: "No such certificate" }), el("p", {}, "No certificate has the serial ", mono(serial), "."))
        : errorView(e, () => render());
      // revoke-result stays, so a revocation's outcome is shown even when re-reading the certificate failed.
      setView("Certificate " + serial, crumbs(), el("h1", { text: "Certificate" }),
        el("div", { id: "revoke-result", "aria-live": "polite", "data-serial": serial }), err);
      return null;
    }
    const ov = await overview().catch(() => null);
    if (!wait.isConnected) return null;
    const revocable = c.status !== "revoked";
    const audit = el("ol", { class: "audit" },
      el("li", {}, time(c.created), ` Requested over ${source(c)}`, c.requester ? el("span", {}, " by ", requester(c.requester)) : null),
      c.sha256 ? el("li", { text: "Signed by the CA key and recorded as issued" + (c.profile ? ` (profile ${c.profile})` : "") }) : null,
      c.intuneNotified ? el("li", { text: "Intune accepted the success notification" }) : null,
      c.withheld ? el("li", { class: "bad", text: "Withheld: signed but never delivered (Intune refused the notification)" }) : null,
      c.note ? el("li", { text: "Note: " + c.note }) : null,
      c.status === "revoked" ? el("li", { class: "bad" }, time(c.revokedAt), ` Revoked (${reasonLabel(c.revocationReason)})` + (c.revokedBy ? ` by ${c.revokedBy}` : "")) : null);
    const chain = el("ol", { class: "chain" }, el("li", {}, el("strong", { text: c.subject || "(empty subject)" }), el("span", { class: "muted", text: " — this certificate" })));
    if (ov && ov.ca) for (const ca of ov.ca) chain.prepend(el("li", {}, ca.subject, el("span", { class: "muted", text: ca.subject === ca.issuer ? " — root" : " — CA" })));
    else chain.prepend(el("li", { text: c.issuer }));

    const downloads = el("div", { class: "actions" },
      c.pem ? el("button", { type: "button", class: "ghost", id: "download-pem", onclick: () => download(c.serial + ".pem", "application/x-pem-file", c.pem), text: "Download PEM" }) : null,
      c.pem ? el("button", { type: "button", class: "ghost", id: "download-der", onclick: () => download(c.serial + ".cer", "application/pkix-cert", pemToDer(c.pem)), text: "Download DER" }) : null,
      !c.pem ? el("span", { class: "muted", text: "No certificate was stored (the signature never completed), so there is nothing to download." }) : null);

    const sections = [
      crumbs(),
      el("div", { class: "title-row" }, el("h1", { class: "subject-title" }, c.subject || "(empty subject)"), badge(c.status)),
      el("div", { id: "revoke-result", "aria-live": "polite", "data-serial": c.serial }),
      // A revoked certificate says so above everything else, with why and when: the badge alone was easy to miss
      // beside a validity that still counted its days left.
      c.status === "revoked" ? notice("error", el("p", { id: "revoked-banner" }, el("strong", { text: "Revoked " }), time(c.revokedAt),
        " for " + reasonLabel(c.revocationReason).toLowerCase() + (c.revokedBy ? ` by ${c.revokedBy}` : "") + ".",
        c.revocationRef ? el("span", {}, " Comment or reference: ", el("q", { text: c.revocationRef }), ".") : null,
        " The CRL and OCSP report it as revoked.")) : null,
      el("div", { class: "cols" },
        el("section", { class: "card" }, el("h2", { text: "Names" }), dl([["Subject", c.subject], ["Subject alternative names", c.sans ? el("ul", { class: "plain" }, c.sans.map((s) => el("li", { text: s }))) : ""], ["Serial", mono(c.serial)]])),
        el("section", { class: "card" }, el("h2", { text: "Validity" }), dl([["Not before", time(c.notBefore)], ["Not after", expiry(c.notAfter, c.status)], ["Status", badge(c.status)],
          ["Revoked", c.revokedAt ? time(c.revokedAt) : ""], ["Reason", c.status === "revoked" || c.revocationReason ? reasonLabel(c.revocationReason) : ""], ["Revoked by", c.revokedBy],
            ["Comment or reference", c.revocationRef], ["Key compromised", keyCompromised(c)]])),
        el("section", { class: "card" }, el("h2", { text: "Lineage" }), chain, dl([["Issuer", c.issuer], ["Profile", c.profile], ["Renewed from", c.renewedFrom ? el("a", { href: "#/certificate/" + encodeURIComponent(c.renewedFrom), text: c.renewedFrom }) : ""], ["Renewed to", c.renewedTo ? el("a", { href: "#/certificate/" + encodeURIComponent(c.renewedTo), text: c.renewedTo }) : ""], ["Renewal chain since", c.chainStarted ? time(c.chainStarted) : ""]])),
        el("section", { class: "card" }, el("h2", { text: "Request and Intune" }), dl([["Source", source(c)], ["Requester", requesterFull(c.requester)], ["Device ID", c.deviceId],
          ["Transaction ID", c.transactionId ? mono(c.transactionId) : ""], ["Intune notified", c.source === "scep" ? (c.intuneNotified ? "yes" : "no") : ""], ["Withheld", c.withheld ? "yes" : ""]])),
        el("section", { class: "card" }, el("h2", { text: "Fingerprints" }), dl([["SHA-256", c.sha256 ? mono(c.sha256) : ""], ["SHA-1", c.sha1 ? mono(c.sha1) : ""]]), downloads),
        el("section", { class: "card" }, el("h2", { text: "Audit trail" }), audit)),
    ];
    const manage = revocable && (await canManage());
    if (!wait.isConnected) return null;
    if (manage) sections.push(revokePanel(c));
    else if (revocable) sections.push(el("section", { class: "card", id: "revoke-readonly" }, el("h2", { text: "Revocation" }),
      el("p", { class: "muted" }, "Revoking needs the app role ", el("code", { text: ROLE_MANAGE }), "; you can read certificates only.")));
    setView("Certificate " + c.serial, ...sections);
    focusMain();
    return c;
  }

  // keyCompromised says when and with which certificate this certificate's key was reported compromised (a
  // keyCompromise revocation, of this certificate or another for the same key), or "" when it was not. A valid
  // certificate whose key was reported with another is revoked too by the CA's hourly timer.
  function keyCompromised(c) {
    const k = c.keyCompromised;
    if (!k) return "";
    const by = k.serial === c.serial ? "with this certificate"
      : el("span", {}, "with certificate ", el("a", { href: "#/certificate/" + encodeURIComponent(k.serial), text: k.serial }));
    return el("span", { class: "bad", id: "key-compromised" }, "Reported ", time(k.markedAt), " ", by, k.by ? ` by ${k.by}` : "",
      c.status === "revoked" ? "" : "; the hourly timer revokes this certificate too");
  }

  // The serials whose revocation is on its way. One request at a time: an administrator who thinks a slow click
  // was lost and revokes again (perhaps with another reason) sends nothing more until the CA has answered.
  const revoking = new Set();

  // revoke posts the revocation and shows its outcome in #revoke-result of the re-read certificate.
  async function revoke(serial, reason, comment) {
    if (revoking.has(serial)) return;
    revoking.add(serial);
    // The form waits with the request, so the page does not offer what it would not send.
    const controls = [...document.querySelectorAll("form.revoke button, form.revoke select, form.revoke input")];
    for (const c of controls) c.disabled = true;
    try {
      await revokeAndShow(serial, reason, comment, controls);
    } finally {
      revoking.delete(serial);
    }
  }

  async function revokeAndShow(serial, reason, comment, controls) {
    const out = document.getElementById("revoke-result");
    out.replaceChildren(loading("Revoking…"));
    let r, failed;
    try {
      r = await apiJSON("../certificates/" + encodeURIComponent(serial) + "/revoke", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ reason, comment }),
      });
    } catch (e) {
      failed = e;
    }
    // A refusal (4xx) changed nothing: the page stays as it is. After any other answer the certificate is read
    // again, so the page never keeps showing "issued" and a revoke form for a revoked certificate: a 5xx or a lost
    // connection can come after the revocation was recorded (the API answers 503 when only a later write failed).
    if (failed instanceof ApiError && failed.status >= 400 && failed.status < 500) {
      for (const c of controls) c.disabled = false;
      // Disabling the focused Revoke button dropped the focus to the document; it comes back.
      const again = document.getElementById("revoke-button");
      if (document.activeElement === document.body && again) again.focus();
      return out.replaceChildren(errorView(failed));
    }
    // The administrator moved on while the CA answered: the page they chose stays (the certificate's page shows
    // its status when opened again).
    if (!out.isConnected) return;
    const now = await viewCertificate(serial);
    const res = document.getElementById("revoke-result");
    if (!res || res.dataset.serial !== serial) return;
    if (r) {
      return res.replaceChildren(notice("ok", el("strong", { text: r.alreadyRevoked ? "Already revoked. " : "Revoked. " }),
        r.alreadyRevoked ? "The certificate had been revoked before; the recorded reason is " + reasonLabel(r.revocationReason).toLowerCase() + "." : "The CRL and OCSP now report this certificate as revoked (" + reasonLabel(r.revocationReason).toLowerCase() + ")."));
    }
    const answer = failed instanceof ApiError ? (failed.status || "nothing") + (failed.problem.code ? " (" + failed.problem.code + ")" : "") + ": " + failed.message : String(failed);
    if (now && now.status === "revoked") {
      return res.replaceChildren(notice("warn", el("strong", { text: "Revoked, not yet complete. " }),
        "The certificate is recorded as revoked (" + reasonLabel(now.revocationReason).toLowerCase() + "), but the CA answered " + answer + " before it finished." +
        " Revoke again to complete it on every instance; the recorded reason stays.",
        el("div", { class: "actions" }, el("button", { type: "button", class: "primary", id: "revoke-retry", onclick: () => revoke(serial, reason, comment), text: "Complete the revocation" }))));
    }
    res.replaceChildren(notice("error", el("strong", { text: "Not revoked. " }),
      (now ? "The certificate is still recorded as " + now.status + ". " : "Whether the revocation was recorded is not known: this certificate could not be read again. ") + "The CA answered " + answer + ".",
      el("div", { class: "actions" }, el("button", { type: "button", class: "ghost", id: "revoke-retry", onclick: () => revoke(serial, reason, comment), text: "Try again" }))));
  }

  // The CA keeps the first 256 bytes of a revocation's comment (UTF-8; revocation.RevokeAudited) and drops the
  // rest without a word; the input's maxlength counts characters, and "ä" or "→" take two or three bytes.
  const COMMENT_MAX_BYTES = 256;

  function revokePanel(c) {
    const reason = select("reason", REASONS, "unspecified");
    const comment = el("input", { id: "comment", name: "comment", maxlength: String(COMMENT_MAX_BYTES), autocomplete: "off", "aria-describedby": "comment-error" });
    const commentError = el("p", { id: "comment-error", class: "bad small", role: "alert" });
    comment.addEventListener("input", () => {
      commentError.textContent = "";
      comment.removeAttribute("aria-invalid");
    });
    const dialog = el("dialog", { id: "confirm-revoke", "aria-labelledby": "confirm-title" });
    const form = el("form", { class: "revoke" },
      el("h2", { text: "Revoke this certificate" }),
      el("p", { class: "muted", text: "Revocation is permanent: the CRL and the OCSP responder report the certificate as revoked from the moment it is recorded." }),
      el("div", { class: "grid two" }, field("Reason (RFC 5280)", reason), field("Comment (audit log, optional)", comment)),
      commentError,
      el("div", { class: "actions" }, el("button", { type: "submit", class: "danger", id: "revoke-button", text: "Revoke…" })),
      dialog);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (revoking.has(c.serial)) return;
      // What the dialog shows is what is sent and recorded: the comment without its surrounding blanks, and only a
      // comment the CA keeps whole.
      const note = comment.value.trim();
      const bytes = new TextEncoder().encode(note).length;
      if (bytes > COMMENT_MAX_BYTES) {
        commentError.textContent = `The comment is ${bytes} bytes long; the audit log keeps ${COMMENT_MAX_BYTES} (letters such as ä take two). Shorten it.`;
        comment.setAttribute("aria-invalid", "true");
        comment.focus();
        return;
      }
      const chosen = reason.value;
      const label = REASONS.find(([v]) => v === chosen)[1];
      const yes = el("button", { type: "button", class: "danger", id: "confirm-yes", text: "Revoke certificate" });
      const no = el("button", { type: "button", class: "ghost", id: "confirm-no", text: "Cancel" });
      dialog.replaceChildren(
        el("h2", { id: "confirm-title", text: "Revoke this certificate?" }),
        // What the admin typed, repeated before the irreversible step: the comment is the audit log's only "why".
        dl([["Subject", c.subject], ["Serial", mono(c.serial)], ["Reason", label],
          ["Comment", note || el("span", { class: "muted", text: "none" })]]),
        el("p", { text: "This cannot be undone." }),
        el("div", { class: "actions" }, no, yes));
      no.addEventListener("click", () => dialog.close());
      yes.addEventListener("click", () => {
        dialog.close();
        revoke(c.serial, chosen, note);
      });
      dialog.showModal();
      no.focus();
    });
    return el("section", { class: "card danger-zone" }, form);
  }

  // What to do about the CA's refusals of a CSR (policy.Code): the detail says what was wrong; the administrator
  // also needs to know where to fix it, in the request or in the choice of profile.
  const REFUSALS = {
    malformed_csr: "The CA could not read a PKCS#10 request: paste all of it, from -----BEGIN CERTIFICATE REQUEST----- to the END line, or choose the file.",
    bad_csr_signature: "The request's signature does not match its key: it was changed after it was signed. Create it again.",
    bad_signature_algorithm: "The request is signed with an algorithm the CA does not accept (above): sign it again with another.",
    bad_key: "The request's key is not one the profile accepts (above): create a new key and request again.",
    key_compromised: "This key was reported compromised: create a new key and request again.",
    subject_alt_name_not_allowed: "The profile does not allow one of the names: choose a profile whose \"Names allowed\" include it, or leave the name out of the request.",
    bad_subject: "The subject is not one the profile allows: change it in the request, or choose another profile.",
    key_usage_not_allowed: "Key usages come from the profile, not the request: request without them, or choose a profile that has them.",
    extended_key_usage_not_allowed: "Extended key usages come from the profile, not the request: request without them, or choose a profile that has them.",
    forbidden_extension: "The request asks for something the CA never puts in a certificate (a CA certificate, certificate signing, name constraints or an unknown critical extension): create it again without it.",
  };

  // --- request a certificate (the Certificate Master flow)
  async function viewRequest() {
    const text = el("textarea", { id: "csr", name: "csr", rows: "9", spellcheck: "false", placeholder: "-----BEGIN CERTIFICATE REQUEST-----", "aria-describedby": "csr-hint" });
    const file = el("input", { id: "csr-file", name: "file", type: "file", accept: ".csr,.req,.pem,.der,.p10" });
    const profile = select("profile", [], "");
    const out = el("div", { id: "request-result", "aria-live": "polite" });
    // What the form itself refuses (nothing to send, not a CSR) is said beside the button, so the certificate just
    // issued stays on the page with its downloads.
    const formError = el("div", { id: "request-form-error", "aria-live": "polite" });
    const form = el("form", { class: "card", id: "request-form" },
      field("Certificate signing request (PEM)", text, "Paste a PKCS#10 request, e.g. from: openssl req -new -newkey rsa:3072 -nodes -keyout app.key -subj /CN=app.contoso.com -addext subjectAltName=DNS:app.contoso.com"),
      field("…or choose a file (PEM or DER)", file),
      field("Profile", profile, "The certificate is built from the profile: key usages, EKUs and validity come from it, never from the request."),
      el("div", { id: "profile-info" }),
      el("div", { class: "actions" }, el("button", { type: "submit", class: "primary", id: "request-button", text: "Request certificate" })),
      formError);
    setView("Request a certificate", el("h1", { text: "Request a certificate" }),
      el("p", { class: "lead", text: "Submit a CSR for a server or application certificate and download the result. Needs the app role CSR.Request.Db." }), form, out);
    focusMain();

    overview().then((ov) => {
      const names = ov.apiProfiles && ov.apiProfiles.length ? ov.apiProfiles : ov.apiProfile ? [ov.apiProfile] : [];
      profile.replaceChildren(...names.map((n, i) => el("option", { value: n, text: i === 0 ? n + " (default)" : n })));
      const show = () => {
        const info = (ov.profiles || []).find((p) => p.name === profile.value);
        document.getElementById("profile-info").replaceChildren(info ? dl([["Validity", info.validity], ["Key usage", (info.keyUsage || []).join(", ")],
          ["Extended key usage", (info.eku || []).join(", ")], ["Names allowed", (info.sans || []).join(", ")]]) : "");
      };
      profile.addEventListener("change", show);
      show();
    }).catch(() => {
      profile.replaceChildren(el("option", { value: "", text: "the CA's API profile" }));
    });

    // A DER file chosen is what "Request certificate" sends, in place of the (emptied) text box. Once the box holds
    // text again (pasted or typed over the file's note) that text is the request: the file is let go, so the CA
    // signs the request on the screen, not the one in a file chosen earlier.
    const csrPlaceholder = text.placeholder;
    const dropDER = () => {
      file.dataset.der = "";
      text.placeholder = csrPlaceholder;
    };
    text.addEventListener("input", () => {
      if (file.dataset.der !== "1" || !text.value.trim()) return;
      file.value = "";
      dropDER();
    });

    file.addEventListener("change", async () => {
      const f = file.files[0];
      dropDER();
      if (!f) return;
      formError.replaceChildren();
      if (f.size > 64 * 1024) {
        formError.replaceChildren(notice("error", el("p", { text: "That file is larger than 64 KiB; a CSR is a few KiB at most." })));
        file.value = "";
        return;
      }
      const buf = new Uint8Array(await f.arrayBuffer());
      const txt = new TextDecoder().decode(buf);
      if (txt.includes("-----BEGIN")) {
        text.value = txt.trim();
        file.dataset.der = "";
      } else {
        text.value = "";
        text.placeholder = `${f.name}: ${buf.length} bytes of DER will be submitted`;
        file.dataset.der = "1";
      }
    });

    // One request at a time: a second click (or Enter) while the CA has not answered would sign a second certificate.
    const button = form.querySelector("#request-button");
    let requesting = false;
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      if (requesting) return;
      requesting = true;
      button.disabled = true;
      try {
        await send();
      } finally {
        requesting = false;
        button.disabled = false;
        // Disabling the focused button dropped the focus to the document; after a refusal it comes back.
        if (document.activeElement === document.body && button.isConnected) button.focus();
      }
    });

    async function send() {
      let body, ctype;
      const sentText = text.value, sentFile = file.files[0];
      if (file.dataset.der === "1" && file.files[0]) {
        body = new Uint8Array(await file.files[0].arrayBuffer());
        ctype = "application/pkcs10";
      } else {
        body = text.value.trim();
        ctype = "application/x-pem-file";
        if (!body) {
          formError.replaceChildren(notice("error", el("p", { text: "Paste a CSR or choose a file first." })));
          text.focus();
          return;
        }
        if (!body.includes("-----BEGIN")) {
          formError.replaceChildren(notice("error", el("p", { text: "That does not look like a PEM CSR: it must start with -----BEGIN CERTIFICATE REQUEST-----." })));
          text.focus();
          return;
        }
      }
      formError.replaceChildren();
      out.replaceChildren(loading("Requesting…"));
      let resp, chain;
      try {
        const chosen = profile.value && profile.selectedIndex > 0 ? "?profile=" + encodeURIComponent(profile.value) : "";
        resp = await api("../csr" + chosen, { method: "POST", headers: { "Content-Type": ctype, Accept: "application/x-pem-file" }, body }, ROLE_REQUEST);
        chain = await resp.text();
      } catch (e) {
        if (e instanceof ApiError && e.status === 400) {
          const code = e.problem.code || "";
          return out.replaceChildren(notice("error", el("h2", { text: "The CA refused this request" }),
            el("p", { class: "answer" }, "The CA answered 400", code ? el("span", {}, " ", el("code", { text: code })) : null, ": " + e.message + "."),
            REFUSALS[code] ? el("p", { class: "refusal-hint", text: REFUSALS[code] }) : null));
        }
        return out.replaceChildren(errorView(e));
      }
      const loc = resp.headers.get("Location") || "";
      const serial = decodeURIComponent(loc.split("/").pop() || "");
      const leaf = firstPem(chain);
      const usedProfile = profile.selectedIndex >= 0 ? profile.options[profile.selectedIndex].textContent : "";
      // The request is signed: it leaves the form, so a second click asks for the next CSR instead of signing this
      // one again (a second certificate for the same key, which looked like a click that had done nothing). What the
      // administrator put in the form while waiting is the next request, and stays.
      if (text.value === sentText) text.value = "";
      if (file.files[0] === sentFile) {
        file.value = "";
        dropDER();
      }
      // What was issued, read from the certificate itself: the administrator checks the names and the expiry
      // before handing it on, rather than a serial and a file to open elsewhere.
      let issued = null, unreadable = "";
      try {
        issued = readCertificate(pemToDer(leaf));
      } catch (e) {
        unreadable = String(e.message || e);
      }
      out.replaceChildren(notice("ok",
        el("h2", { text: "Certificate issued" }),
        dl([["Subject", issued ? issued.subject || "(empty subject)" : ""],
          ["Subject alternative names", issued && issued.sans.length ? el("ul", { class: "plain", id: "issued-sans" }, issued.sans.map((n) => el("li", { text: n }))) : ""],
          ["Serial", serial ? el("a", { href: "#/certificate/" + encodeURIComponent(serial) }, mono(serial)) : "—"], ["Profile", usedProfile],
          ["Valid from", issued ? time(issued.notBefore) : ""], ["Expires", issued ? expiry(issued.notAfter) : ""]]),
        unreadable ? el("p", { class: "small", text: "This browser could not read the certificate's names (" + unreadable + "); download it to inspect them." }) : null,
        el("p", { class: "small", id: "request-cleared", text: "The request has been cleared from the form. To request another certificate, paste or choose the next CSR." }),
        el("div", { class: "actions" },
          el("button", { type: "button", class: "primary", id: "download-chain", onclick: () => download((serial || "certificate") + "-chain.pem", "application/x-pem-file", chain), text: "Download PEM chain" }),
          el("button", { type: "button", class: "ghost", id: "download-cert-pem", onclick: () => download((serial || "certificate") + ".pem", "application/x-pem-file", leaf), text: "Download certificate (PEM)" }),
          el("button", { type: "button", class: "ghost", id: "download-cert-der", onclick: () => download((serial || "certificate") + ".cer", "application/pkix-cert", pemToDer(leaf)), text: "Download certificate (DER)" }))));
      out.querySelector("h2").setAttribute("tabindex", "-1");
      out.querySelector("h2").focus();
    }
  }

  // --- the CA overview
  function certCard(title, c) {
    return el("section", { class: "card" }, el("h2", { text: title }), dl([["Subject", c.subject], ["Issuer", c.issuer === c.subject ? "self-signed (root)" : c.issuer],
      ["Serial", mono(c.serial)], ["Key", c.key], ["Valid from", time(c.notBefore)], ["Expires", expiry(c.notAfter)], ["Extended key usage", (c.eku || []).join(", ")], ["SHA-256", mono(c.sha256)]]));
  }

  async function viewOverview() {
    const wait = loading();
    setView("CA overview", el("h1", { text: "CA overview" }), wait);
    let ov;
    try {
      ov = await overview(true);
    } catch (e) {
      if (!wait.isConnected) return;
      return setView("CA overview", el("h1", { text: "CA overview" }), errorView(e, () => render()));
    }
    if (!wait.isConnected) return;
    const cards = [];
    (ov.ca || []).forEach((c, i) => cards.push(certCard(i === 0 ? "Issuing CA certificate" : "Issuer " + i, c)));
    cards.push(ov.ra ? certCard("SCEP RA certificate", ov.ra) : el("section", { class: "card" }, el("h2", { text: "SCEP RA" }), el("p", { text: "No separate RA: the CA key decrypts and signs SCEP messages (RA mode ca)." })));
    cards.push(el("section", { class: "card" }, el("h2", { text: "CA key" }), dl([["Custody", ov.key.custody === "keyvault" ? "Azure Key Vault" : "local key file (development)"],
      ["Vault", ov.key.vault], ["Key name", ov.key.name], ["Key version", ov.key.version ? mono(ov.key.version) : ""], ["RA mode", ov.key.raMode]])));
    cards.push(el("section", { class: "card" }, el("h2", { text: "CRL" }), ov.crl ? dl([["CRL number", mono(ov.crl.number)], ["This update", time(ov.crl.thisUpdate)],
      ["Next update", time(ov.crl.nextUpdate)], ["Revoked entries", String(ov.crl.entries)], ["URL", el("a", { href: ov.urls.crl, text: ov.urls.crl })]]) : notice("error", el("p", { text: ov.crlError || "No CRL." }))));
    const endpoints = el("section", { class: "card wide" }, el("h2", { text: "SCEP endpoints" }),
      (ov.endpoints || []).length ? el("div", { class: "table-wrap" }, el("table", { class: "list" },
        el("thead", {}, el("tr", {}, ["Endpoint", "Challenge", "Profile", "URL"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, ov.endpoints.map((e) => el("tr", {}, el("td", { "data-label": "Endpoint" }, e.name), el("td", { "data-label": "Challenge" }, e.challenge),
          el("td", { "data-label": "Profile" }, e.profile), el("td", { "data-label": "URL" }, mono(e.url))))))) : el("p", { class: "empty", text: "No SCEP endpoints." }),
      ov.apiProfile ? el("p", {}, "REST enrollment ", mono(ov.urls.csr), " issues with profile ", el("strong", { text: ov.apiProfile }), ".") : null);
    const profiles = el("section", { class: "card wide" }, el("h2", { text: "Profiles" }), el("div", { class: "table-wrap" }, el("table", { class: "list" },
      el("thead", {}, el("tr", {}, ["Profile", "Validity", "Key usage", "Extended key usage", "Names"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, (ov.profiles || []).map((p) => el("tr", {}, el("td", { "data-label": "Profile" }, p.name), el("td", { "data-label": "Validity" }, p.validity),
        el("td", { "data-label": "Key usage" }, (p.keyUsage || []).join(", ")), el("td", { "data-label": "EKU" }, (p.eku || []).join(", ")), el("td", { "data-label": "Names" }, (p.sans || []).join(", "))))))));
    // Settings that load but weaken authorization or do not work as written (config.Warning): shown above
    // everything, as the log warns at every start. Some may be the operator's informed choice, so no promise here
    // that all of them will be refused.
    const warnings = (ov.warnings || []).length ? [notice("warn", el("h2", { text: "Settings that weaken authorization or do not work as written" }),
      el("ul", { class: "config-warnings" }, ov.warnings.map((w) => el("li", { text: w.message }))),
      el("p", { text: "Each is logged at every start. Fix them, or keep them knowingly: README.md (Operations) says which a future release refuses." }))] : [];
    setView("CA overview", el("h1", { text: "CA overview" }), ...warnings, el("div", { class: "cols" }, ...cards, endpoints, profiles));
    focusMain();
  }

  // --- revocation sync runs and stale pending records
  // A manual sync is answered as soon as it has started (the host cuts a request after 230 s, and a run may take
  // minutes): followSync polls the run's status, which any instance of the CA answers from the run's record, until
  // the run has ended, then shows its outcome above the refreshed list. It stops when the page moves on.
  const SYNC_POLL_MS = 2000;
  // A status poll that fails for a passing reason (the CA or the network briefly unavailable) is tried again, up to
  // this many times in a row, before the page gives up following the run.
  const SYNC_POLL_TRIES = 3;
  // A network failure is an ApiError with status 0 (see api).
  const transient = (e) => !(e instanceof ApiError) || [0, 429, 502, 503, 504].includes(e.status);

  async function followSync(run, statusPath) {
    const current = () => {
      const res = document.getElementById("sync-result");
      return res && res.dataset.run === run.id ? res : null;
    };
    let failures = 0;
    while (run.state === "running") {
      const res = current();
      if (!res) return;
      res.replaceChildren(loading(`Sync run ${run.id} is running at the CA; this page shows its outcome when it ends…`));
      await new Promise((ok) => setTimeout(ok, SYNC_POLL_MS));
      if (!current()) return;
      try {
        run = await apiJSON(statusPath);
        failures = 0;
      } catch (e) {
        if (transient(e) && ++failures < SYNC_POLL_TRIES) continue;
        const res = current();
        if (res) res.replaceChildren(errorView(e, () => render()),
          el("p", { class: "muted", text: "The run goes on at the CA; its outcome will be in the list of runs." }));
        return;
      }
    }
    // The last poll may have been answered after the page moved on: the page the administrator chose stays.
    if (!current()) return;
    await viewOperations();
    const res = document.getElementById("sync-result");
    if (res) res.replaceChildren(syncOutcome(run));
  }

  function syncOutcome(r) {
    const errs = r.errors || [];
    const head = { finished: "Sync run finished" + (errs.length ? " with errors" : ""), failed: "The sync run failed on the way",
      interrupted: "The sync run was interrupted before it finished" }[r.state] || "Sync run " + r.state;
    const next = r.state === "finished" ? "" : " The next run (hourly, or one started here) takes up what is left.";
    return notice(r.state === "finished" && !errs.length ? "ok" : "error",
      el("p", { text: head + `: ${r.downloaded} downloaded, ${r.revoked} revoked, ${r.notFound || 0} not found, ${r.failed || 0} failed, ${r.uploaded} uploaded.` + next }),
      errs.length ? el("ul", { class: "plain bad" }, errs.map((x) => el("li", { text: x }))) : null);
  }

  // The scans of the Entra sweeps (revocation.PassedOver's Scan), by what an administrator reads.
  const SCAN_LABELS = { round: "delta round", pass: "verifying pass", owners: "owner check" };

  // passedOverSection is the list of certificates the Entra sweeps passed over, or, when it could not be read, an
  // error for this section alone: the runs and pending records above it are still worth reading.
  function passedOverSection(po) {
    let body;
    if (po.error) body = errorView(po.error, () => render());
    else if (po.items.length) {
      body = el("div", { class: "table-wrap" }, el("table", { class: "list", id: "passed-over" },
        el("caption", { text: `${po.items.length} certificate${po.items.length === 1 ? "" : "s"} passed over, the longest first` }),
        el("thead", {}, el("tr", {}, ["Serial", "Scan", "Passed over", "Failed re-asks", "Next try"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, po.items.map((p) => el("tr", {},
          el("td", { "data-label": "Serial", class: "serial-cell" }, el("a", { href: "#/certificate/" + encodeURIComponent(p.serial) }, el("code", { class: "mono serial", title: p.serial, text: p.serial }))),
          el("td", { "data-label": "Scan" }, SCAN_LABELS[p.scan] || p.scan), el("td", { "data-label": "Passed over" }, time(p.since)),
          el("td", { "data-label": "Failed re-asks" }, String(p.failed || 0)), el("td", { "data-label": "Next try" }, time(p.next)))))));
    } else {
      body = el("div", { class: "empty" }, el("h3", { text: "No certificate is waiting" }),
        el("p", { text: "No certificate is waiting for the Entra sweeps to ask about it again." }));
    }
    return el("section", { class: "card wide", id: "passed-over-section" }, el("h2", { text: "Certificates the Entra sweeps passed over" }),
      el("p", { class: "muted", text: "The sweeps could not settle these (the lookup of the account or device, or the revocation, failed several runs in a row). Later hourly runs ask again, less often each time; if the account or device is gone, open the certificate and revoke it by serial." }),
      body);
  }

  async function viewOperations() {
    const wait = loading();
    setView("Sync & pending", el("h1", { text: "Revocation sync and pending records" }), wait);
    let runs, ov;
    // The passed-over list is its own request: when it cannot be read, the rest of the view is still shown.
    const passed = apiJSON("../certificates/passed-over").then((r) => ({ items: r.items || [] }), (e) => ({ error: e }));
    try {
      [runs, ov] = await Promise.all([apiJSON("../certificates/revocation-sync"), overview(true)]);
    } catch (e) {
      if (!wait.isConnected) return;
      return setView("Sync & pending", el("h1", { text: "Revocation sync and pending records" }), errorView(e, () => render()));
    }
    const out = el("div", { id: "sync-result", "aria-live": "polite" });
    const manage = runs.enabled && (await canManage());
    if (!wait.isConnected) return;
    const runNow = manage ? el("button", { type: "button", class: "primary", id: "sync-now", text: "Run a sync now" }) : null;
    if (runNow) {
      runNow.addEventListener("click", async () => {
        runNow.disabled = true;
        out.replaceChildren(loading("Starting the Intune revocation sync…"));
        let resp, run;
        try {
          resp = await api("../certificates/revocation-sync", { method: "POST" });
          run = await resp.json();
        } catch (e) {
          out.replaceChildren(errorView(e));
          runNow.disabled = false;
          return;
        }
        // 202: the run has started and goes on at the CA whatever this page does; follow its status.
        out.dataset.run = run.id;
        await followSync(run, resp.headers.get("Location") || "../certificates/revocation-sync/" + encodeURIComponent(run.id));
      });
    }
    const runsTable = runs.items.length ? el("div", { class: "table-wrap runs" }, el("table", { class: "list" },
      el("caption", { text: "The most recent runs, newest first" }),
      el("thead", {}, el("tr", {}, ["Started", "Trigger", "Duration", "Downloaded", "Revoked", "Not found", "Failed", "Uploaded", "Errors"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, runs.items.map((r) => el("tr", { class: r.errors && r.errors.length ? "has-errors" : "" },
        el("td", { "data-label": "Started" }, time(r.started)), el("td", { "data-label": "Trigger" }, r.trigger),
        el("td", { "data-label": "Duration" }, r.state === "running" || r.state === "interrupted" ? r.state :
          r.finished && !r.finished.startsWith("0001-") ? ((new Date(r.finished) - new Date(r.started)) / 1000).toFixed(1) + " s" : "unfinished"),
        el("td", { "data-label": "Downloaded" }, String(r.downloaded)), el("td", { "data-label": "Revoked" }, String(r.revoked)),
        el("td", { "data-label": "Not found" }, String(r.notFound)), el("td", { "data-label": "Failed" }, String(r.failed)), el("td", { "data-label": "Uploaded" }, String(r.uploaded)),
        el("td", { "data-label": "Errors" }, r.errors && r.errors.length ? el("ul", { class: "plain bad" }, r.errors.map((x) => el("li", { text: x }))) : "none")))))) :
      el("div", { class: "empty" }, el("h3", { text: "No sync runs yet" }), el("p", { text: runs.enabled ? "The timer runs every hour; start one now to see it here." : "Intune is not configured on this CA, so there is nothing to sync." }));
    const pending = ov.stalePending.length ? el("div", { class: "table-wrap" }, el("table", { class: "list" },
      el("caption", { text: `${ov.stalePending.length} pending record${ov.stalePending.length === 1 ? "" : "s"} older than ${ov.stalePendingMinutes} minutes` }),
      el("thead", {}, el("tr", {}, ["Subject", "Serial", "Endpoint", "Created"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, ov.stalePending.map((c) => el("tr", {}, el("td", { "data-label": "Subject" }, el("a", { href: "#/certificate/" + encodeURIComponent(c.serial) }, subjectParts(c.subject))),
        serialCell(c.serial), el("td", { "data-label": "Endpoint" }, source(c)), el("td", { "data-label": "Created" }, time(c.created))))))) :
      el("div", { class: "empty" }, el("h3", { text: "No stale pending records" }), el("p", { text: `No request has stayed pending for more than ${ov.stalePendingMinutes} minutes.` }));
    const po = await passed;
    if (!wait.isConnected) return;
    setView("Sync & pending", el("h1", { text: "Revocation sync and pending records" }),
      el("section", { class: "card wide" }, el("div", { class: "title-row" }, el("h2", { text: "Intune revocation sync" }), runNow), out, runsTable),
      el("section", { class: "card wide" }, el("h2", { text: "Stale pending records" }),
        el("p", { class: "muted", text: "A pending record older than this means the request died between the record and the signature: a certificate may have been signed. Open it and revoke by serial if in doubt." }), pending),
      passedOverSection(po));
    focusMain();
  }

  // ---- start -----------------------------------------------------------------------------------------------
  function showFatal(err) {
    setView("Error", el("section", { class: "card narrow" }, el("h1", { text: "The console could not start" }), notice("error", el("p", { text: String(err.message || err) })),
      el("button", { type: "button", class: "primary", onclick: () => location.assign(location.pathname), text: "Reload" })));
  }

  async function start() {
    document.getElementById("signout").addEventListener("click", signOut);
    // The skip link's #main is also a hash, which this page routes by: followed as a link it would leave the page
    // for the certificate list. It moves the focus only.
    document.querySelector(".skip").addEventListener("click", (ev) => {
      ev.preventDefault();
      main.focus();
    });
    // The narrow window's menu: a section chosen (also the one shown) or Esc closes it.
    const menu = document.getElementById("menu");
    menu.addEventListener("click", () => setMenu(menu.getAttribute("aria-expanded") !== "true"));
    document.getElementById("nav").addEventListener("click", (ev) => {
      if (ev.target.closest("a")) setMenu(false);
    });
    document.addEventListener("keydown", (ev) => {
      if (ev.key !== "Escape" || menu.getAttribute("aria-expanded") !== "true") return;
      setMenu(false);
      menu.focus();
    });
    window.addEventListener("hashchange", () => {
      setMenu(false);
      render().catch(showFatal);
    });
    const resp = await fetch("config.json", { cache: "no-store", credentials: "omit" });
    state.cfg = await resp.json();
    if (state.cfg.mode === "dev") await devCompleteSignIn();
    if (state.cfg.mode === "entra") await entraInit();
    await render();
  }

  start().catch(showFatal);
})();
