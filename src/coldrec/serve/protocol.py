"""uvicorn's HTTP protocol with JSON errors: a request its parser refuses (malformed, or a URL or header
past the parser's own limit, about 64 KB) gets a 400 in the API's error shape instead of plain text.

Shorter over-long URLs never get that far: the app answers them with a 414 (`Settings.max_url_bytes`).
"""

import json

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

#: `uvicorn.run(..., http=HTTP_PROTOCOL)`, also as a string for worker processes.
HTTP_PROTOCOL = "coldrec.serve.protocol:JsonErrorsProtocol"
BODY = json.dumps({"detail": [{
    "loc": ["request"], "type": "invalid_request", "field": "request",
    "msg": "invalid HTTP request: malformed, or a URL or header too long",
}]}).encode()


class JsonErrorsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n", b"content-length: " + str(len(BODY)).encode() + b"\r\n",
                        b"connection: close\r\n", b"\r\n", BODY])
        self.transport.write(b"".join(content))
        self.transport.close()
