// HTTPS client on node's built-in fetch (undici): usage: NODE_EXTRA_CA_CERTS=CA node fetch.js PORT.
// undici writes the first request of a connection from the TLS handshake-done callback,
// which node runs inside SSL_read: a write nested in a read. Two origins (127.0.0.1 and
// localhost) give two connections, each with a handshake and two requests.
'use strict';

const [port] = process.argv.slice(2);

async function post(host, size, body) {
  const res = await fetch(`https://${host}:${port}/size/${size}`, { method: 'POST', body });
  const text = await res.text();
  if (text.length !== size) throw new Error(`expected ${size} bytes, got ${text.length}`);
}

(async () => {
  for (const host of ['127.0.0.1', 'localhost']) {
    await post(host, 100, `first request to ${host}`);
    await post(host, 70000, Buffer.alloc(5000, 97));
  }
  process.exit(0);  // do not wait for the pools' idle sockets to time out
})().catch((err) => { console.error(err); process.exit(1); });
