"""A small stand-in agent: HTTPS calls over one keep-alive connection, tools as subprocesses,
a node child making its own HTTPS call, a file written. Usage: tool_agent.py PORT CAFILE WORKDIR EXIT."""

import http.client
import os
import ssl
import subprocess
import sys

port, cafile, workdir, code = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=cafile)
conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
for i in range(3):
    conn.request("POST", f"/size/{100 + i}", body=b'{"step": %d}' % i,
                 headers={"Authorization": "Bearer sk-proj-Xq7fT2mLw9RkZc4VbN1aHs8DpE3uYo6Gj0iKl5MnOp"})
    conn.getresponse().read()
subprocess.run(["sh", "-c", f"echo done > {workdir}/notes.txt; exit 3"])
subprocess.run(["ls", workdir], stdout=subprocess.DEVNULL)
node = os.path.join(os.path.dirname(__file__), "..", "tls_peers", "client.js")
subprocess.run(["node", node, str(port), cafile], stdout=subprocess.DEVNULL, check=True)
sys.exit(code)
