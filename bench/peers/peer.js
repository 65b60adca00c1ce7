// A TLS 1.3 test peer on Node.js `tls`, for bench/inference_corpus.py (node bench/peers/peer.js SPEC_JSON).
// Same spec and behaviour as peer.go: the server answers GET with a small HTTP response, reads until EOF or a
// linger, then ends (close_notify); the client writes, reads for a linger and ends.
"use strict";
const tls = require("tls");
const fs = require("fs");
const path = require("path");

const s = JSON.parse(process.argv[2]);
const pki = (name) => fs.readFileSync(path.join(s.pki, name));
const keylog = (line) => fs.appendFileSync(s.keylog, line);
const linger = s.linger * 1000;

if (s.role === "server") {
  const opts = {
    key: pki("server.key"), cert: pki("server.pem"), ca: pki("ca.pem"),
    minVersion: "TLSv1.3", maxVersion: "TLSv1.3",
    requestCert: s.server_mode !== "none", rejectUnauthorized: s.server_mode === "required",
  };
  if (s.hrr) opts.ecdhCurve = "P-384";
  if (s.num_tickets !== null && s.num_tickets !== undefined) opts.sessionTimeout = 300;
  let count = 0;
  const server = tls.createServer(opts, (sock) => {
    const index = ++count;
    // Optional auth: an untrusted certificate is refused by the application after the handshake.
    if (s.server_mode === "optional" && sock.getPeerCertificate() && sock.getPeerCertificate().subject && !sock.authorized) {
      console.log(`connection ${index}: untrusted certificate, destroying`);
      sock.destroy();
      return;
    }
    if (s.server_data) sock.write("srv\n");
    const timer = setTimeout(() => sock.end(), linger + 2000);
    sock.on("data", (d) => { if (d.toString().startsWith("GET")) sock.write("HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\nok\n"); });
    sock.on("end", () => { clearTimeout(timer); sock.end(); });
    sock.on("error", (e) => console.log(`connection ${index}: ${e}`));
    sock.on("close", () => { console.log(`connection ${index}: closed`); if (count >= s.n) server.close(); });
  });
  server.on("keylog", (line) => keylog(line));
  server.on("tlsClientError", (e) => { console.log(`handshake failed: ${e}`); if (++count >= s.n) server.close(); });
  server.listen(s.port, "127.0.0.1", () => console.log("READY"));
} else {
  let session;
  const one = (index) => {
    if (index > s.n) return;
    const abort = s.client_mode === "abort";
    const opts = {
      host: "127.0.0.1", port: s.port, servername: s.sni, minVersion: "TLSv1.3", maxVersion: "TLSv1.3",
      ca: pki(abort ? "untrusted-ca.pem" : "ca.pem"), rejectUnauthorized: true,
    };
    if (s.cert) { opts.cert = pki(`${s.cert}.pem`); opts.key = pki(`${s.cert}.key`); }
    if (s.resume && session) opts.session = session;
    const sock = tls.connect(opts, () => {
      console.log(`connection ${index}: secure, resumed=${sock.isSessionReused()}`);
      if (s.client_mode === "data") sock.write("hi\n");
      if (s.client_mode === "http") sock.write(`GET / HTTP/1.0\r\nHost: ${s.sni}\r\n\r\n`);
      if (s.client_mode === "close") sock.end();
      else setTimeout(() => sock.end(), linger);
    });
    sock.on("keylog", (line) => keylog(line));
    sock.on("session", (sess) => { session = sess; });
    sock.on("data", () => {});
    sock.on("error", (e) => console.log(`connection ${index}: ${e}`));
    sock.on("close", () => setTimeout(() => one(index + 1), 100));
    setTimeout(() => sock.destroy(), 8000);
  };
  one(1);
}
