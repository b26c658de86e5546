// Reads signing cases (JSON) on stdin, signs each with the console's signer.js, prints
// {"signature", "authorization", "canonical"} per case as JSON: tests/unit/test_console_signer.py
// compares them with the spec's vectors and with liverelay.api.signing.
import { signRequest } from "../../src/liverelay/console/signer.js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const cases = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const out = [];
for (const c of cases) {
  const signed = await signRequest({
    method: c.method,
    host: c.host,
    path: c.path,
    query: c.query,
    body: Buffer.from(c.body_b64, "base64"),
    accessKey: c.ak,
    secretKey: c.sk,
    sessionToken: c.token || "",
    date: new Date(c.date),
  });
  out.push({
    signature: signed.signature,
    authorization: signed.headers.Authorization,
    canonical: signed.canonical,
    x_content_sha256: signed.headers["X-Content-Sha256"],
  });
}
process.stdout.write(JSON.stringify(out));
