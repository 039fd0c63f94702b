// HTTPS keep-alive test client for node: usage: node client.js PORT CAFILE.
// One keep-alive socket carries a small request, a 2 MiB body and a large response.
'use strict';
const https = require('https');
const fs = require('fs');

const [port, cafile] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
const ca = fs.readFileSync(cafile);

function request(path, body) {
  return new Promise((resolve, reject) => {
    const req = https.request({
      host: '127.0.0.1', port: Number(port), path, method: 'POST', agent, ca,
      servername: 'localhost', headers: { 'Content-Length': body.length },
    }, (res) => {
      const parts = [];
      res.on('data', (d) => parts.push(d));
      res.on('end', () => resolve(Buffer.concat(parts)));
    });
    req.on('error', reject);
    req.end(body);
  });
}

(async () => {
  const big = Buffer.alloc(2 * 1024 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;
  await request('/size/10', Buffer.from('hello'));
  await request('/size/300000', Buffer.alloc(1000, 120));
  await request('/size/50', big);
  await request('/size/5', Buffer.from('bye'));
  agent.destroy();
})().catch((err) => { console.error(err); process.exit(1); });
