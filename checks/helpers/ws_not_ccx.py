"""A WebSocket server that is not ccx: it completes the upgrade on any path,
sends one text message that is not JSON-RPC `connected`, and closes.
Standard library only. Usage: python3 ws_not_ccx.py PORT"""
import base64
import hashlib
import socket
import sys

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
port = int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(16)
while True:
    conn, _ = server.accept()
    try:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                break
            request += chunk
        key = ""
        for line in request.decode("latin-1").split("\r\n"):
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        if not key:
            continue
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        conn.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"
            ).encode()
        )
        message = b'{"hello": "I am some other WebSocket server"}'
        conn.sendall(bytes([0x81, len(message)]) + message)
    except OSError:
        pass
    finally:
        conn.close()
