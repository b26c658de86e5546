// HMAC-SHA256 request signing as Volcengine's SignerV4 computes it (API spec section B),
// with WebCrypto: the same module runs in the browser and under `node` (its test checks
// it against the spec's B.3 vectors and against liverelay.api.signing).
// The secret never leaves this module except as a signature.

const encoder = new TextEncoder();
const ALGORITHM = "HMAC-SHA256";

function subtle() {
  const c = globalThis.crypto;
  if (!c || !c.subtle) {
    throw new Error("WebCrypto is not available: open the console over HTTPS or on loopback");
  }
  return c.subtle;
}

function toBytes(data) {
  return typeof data === "string" ? encoder.encode(data) : data;
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(data) {
  return hex(await subtle().digest("SHA-256", toBytes(data)));
}

async function hmac(key, message) {
  const k = await subtle().importKey("raw", toBytes(key), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return new Uint8Array(await subtle().sign("HMAC", k, toBytes(message)));
}

// RFC 3986: only unreserved characters stay as they are (space -> %20, / -> %2F).
export function quote(value, safe = "") {
  let out = "";
  for (const ch of String(value)) {
    if (/[A-Za-z0-9\-_.~]/.test(ch) || safe.includes(ch)) {
      out += ch;
    } else {
      for (const b of encoder.encode(ch)) {
        out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
      }
    }
  }
  return out;
}

function compareBytes(a, b) {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

// Sorted by key (byte order); values of one key keep their order (stable sort).
export function canonicalQuery(pairs) {
  return [...pairs]
    .sort((a, b) => compareBytes(a[0], b[0]))
    .map(([k, v]) => `${quote(k)}=${quote(v)}`)
    .join("&");
}

// The SDK drops a default port from Host when signing, and only then.
export function signingHost(host) {
  for (const suffix of [":80", ":443"]) {
    if (host.endsWith(suffix)) return host.slice(0, -suffix.length);
  }
  return host;
}

export function formatXDate(date) {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

export function canonicalRequest(method, path, query, headers, signedHeaders, bodyHash) {
  const lines = signedHeaders
    .map((name) => `${name}:${name === "host" ? signingHost(headers[name] ?? "") : headers[name] ?? ""}\n`)
    .join("");
  return [
    method.toUpperCase(),
    quote(path || "/", "/"),
    canonicalQuery(query),
    lines,
    signedHeaders.join(";"),
    bodyHash,
  ].join("\n");
}

export async function signingKey(secretKey, shortDate, region, service) {
  const kDate = await hmac(secretKey, shortDate);
  const kRegion = await hmac(kDate, region);
  const kService = await hmac(kRegion, service);
  return hmac(kService, "request");
}

// Returns the headers to send: Host (for reference: a browser sets its own), Content-Type,
// X-Date, X-Content-Sha256, [X-Security-Token], Authorization.
export async function signRequest({
  method,
  host,
  path = "/",
  query,
  body = "",
  accessKey,
  secretKey,
  region = "cn-north-1",
  service = "live",
  contentType = "application/json",
  sessionToken = "",
  date = new Date(),
}) {
  const xDate = formatXDate(date);
  const bodyHash = await sha256Hex(body);
  const headers = {
    Host: host,
    "Content-Type": contentType,
    "X-Date": xDate,
    "X-Content-Sha256": bodyHash,
  };
  if (sessionToken) headers["X-Security-Token"] = sessionToken;
  const lower = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  const signed = Object.keys(lower).sort();
  const canonical = canonicalRequest(method, path, query, lower, signed, bodyHash);
  const scope = `${xDate.slice(0, 8)}/${region}/${service}/request`;
  const stringToSign = [ALGORITHM, xDate, scope, await sha256Hex(canonical)].join("\n");
  const key = await signingKey(secretKey, xDate.slice(0, 8), region, service);
  const signature = hex(await hmac(key, stringToSign));
  headers.Authorization =
    `${ALGORITHM} Credential=${accessKey}/${scope}, ` +
    `SignedHeaders=${signed.join(";")}, Signature=${signature}`;
  return { headers, canonical, signature };
}
