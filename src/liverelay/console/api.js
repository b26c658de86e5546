// The console's one way to the node: signed API actions (POST with a JSON body; the
// GET actions with their parameters in the signed query string). The key pair lives in
// sessionStorage only; it is never put in a URL and never sent, only used to sign.
import { signRequest } from "./signer.js";

export const API_VERSION = "2023-01-01";
// Volcengine documents these as GET actions (schemas/streams.py GET_ACTIONS).
export const GET_ACTIONS = new Set([
  "DescribeLiveStreamInfoByPage",
  "DescribeLiveStreamState",
  "DescribeClosedStreamInfoByPage",
  "DescribeForbiddenStreamInfoByPage",
]);
const STORAGE_KEY = "liverelay.console.keys";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.detail = message;
  }
}

export function loadKeys() {
  try {
    const value = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
    return value && value.ak && value.sk ? value : null;
  } catch {
    return null;
  }
}

export function saveKeys(keys) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ ak: keys.ak, sk: keys.sk }));
}

export function clearKeys() {
  sessionStorage.removeItem(STORAGE_KEY);
}

function encodePairs(pairs) {
  return pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
}

// Runs `action` with `params`; resolves to its Result, rejects with an ApiError
// (Code and Message of the Volcengine envelope).
export async function call(action, params = {}, keys = loadKeys()) {
  if (!keys) throw new ApiError(401, "MissingAuthenticationToken", "Sign in first.");
  const query = [
    ["Action", action],
    ["Version", API_VERSION],
  ];
  const method = GET_ACTIONS.has(action) ? "GET" : "POST";
  let body = new Uint8Array();
  if (method === "GET") {
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null && v !== "") query.push([k, String(v)]);
    }
  } else {
    body = new TextEncoder().encode(JSON.stringify(params));
  }
  const { headers } = await signRequest({
    method,
    host: location.host,
    path: "/",
    query,
    body,
    accessKey: keys.ak,
    secretKey: keys.sk,
  });
  delete headers.Host; // the browser sends its own (location.host): the one signed
  let response;
  try {
    response = await fetch(`/?${encodePairs(query)}`, {
      method,
      headers,
      body: method === "GET" ? undefined : body,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (err) {
    throw new ApiError(0, "NetworkError", `the node did not answer (${err.message})`);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    throw new ApiError(response.status, `HTTP${response.status}`, "the answer is not JSON");
  }
  const error = data && data.ResponseMetadata && data.ResponseMetadata.Error;
  if (error || !response.ok) {
    throw new ApiError(response.status, error ? error.Code : `HTTP${response.status}`, error ? error.Message : "");
  }
  return data.Result || {};
}
