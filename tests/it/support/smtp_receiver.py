"""A real SMTP server for the integration tests: aiosmtpd (PyPI, 1.4.6) on loopback.

tests/it/support/smtp.rs runs it and reads what it prints on stdout, one JSON object a line:

  {"event": "ready", "port": 40123}
  {"event": "auth", "tls": true, "mechanism": "PLAIN", "user": "jitgate", "ok": true}
      every AUTH command aiosmtpd hands on, whatever its answer (user: the login it carried,
      if it got that far); an AUTH before STARTTLS on a relay that requires STARTTLS is
      refused by aiosmtpd itself (530) and not printed
  {"event": "mail", "from": "...", "to": ["..."], "data": "raw message", "text": "as read",
   "tls": true, "user": "jitgate"}

It stops when its standard input closes (the test dropped it, or died).
"""

import argparse
import email
import email.policy
import json
import logging
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, syntax

printing = threading.Lock()


def emit(**event):
    with printing:
        print(json.dumps(event), flush=True)


class Server(SMTP):
    """aiosmtpd's SMTP session, telling every AUTH command and whether TLS was on."""

    def __init__(self, *args, implicit_tls, **kwargs):
        super().__init__(*args, **kwargs)
        self.implicit_tls = implicit_tls
        self.tried = None

    def tls_on(self):
        return self.implicit_tls or self._tls_protocol is not None

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg):
        self.tried = None
        await super().smtp_AUTH(arg)
        emit(event="auth", tls=self.tls_on(), mechanism=(arg or "").split(" ")[0].upper(),
             user=self.tried, ok=bool(self.session.authenticated))


class Handler:
    def __init__(self, refused):
        self.refused = refused

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(("plain",))
        text = f"Subject: {message['subject']}\nTo: {message['to']}\n\n"
        text += body.get_content().replace("\r\n", "\n") if body is not None else ""
        emit(event="mail", tls=server.tls_on(), user=session.auth_data,
             to=envelope.rcpt_tos, data=raw.decode("utf-8", "replace"), text=text,
             **{"from": envelope.mail_from})
        return "250 OK: queued"


class Receiver(Controller):
    """A Controller on a port the system picks (port 0), with Server sessions."""

    def __init__(self, *args, implicit_tls, **kwargs):
        super().__init__(*args, **kwargs)
        self.implicit_tls = implicit_tls

    def factory(self):
        return Server(self.handler, implicit_tls=self.implicit_tls, **self.SMTP_kwargs)

    async def _bind(self):
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context)
        self.port = server.sockets[0].getsockname()[1]
        return server

    def _create_server(self):
        return self._bind()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tls", choices=["none", "starttls", "implicit"], default="none")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--refuse", action="append", default=[], help="answer 550 to RCPT TO this")
    a = p.parse_args()
    # aiosmtpd warns of AUTH in the clear, which one mode offers on purpose.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    context = None
    if a.tls != "none":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(a.cert, a.key)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = False
        if isinstance(auth_data, LoginPassword):
            server.tried = auth_data.login.decode("utf-8", "replace")
            ok = (auth_data.login.decode(), auth_data.password.decode()) == (a.user, a.password)
        return AuthResult(success=ok, handled=False, auth_data=server.tried if ok else None)

    options = dict(server_hostname="receiver.test", ident="aiosmtpd test receiver")
    if a.user is not None:
        # AUTH is offered over STARTTLS only; over implicit TLS the socket is TLS already;
        # with no TLS at all it is offered in the clear, so a client that would send its
        # password in the clear is seen doing so.
        options.update(authenticator=authenticator, auth_required=True,
                       auth_require_tls=a.tls == "starttls")
    if a.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    controller = Receiver(Handler(set(a.refuse)), hostname=a.host,
                          ssl_context=context if a.tls == "implicit" else None,
                          implicit_tls=a.tls == "implicit", **options)
    controller.start()
    emit(event="ready", port=controller.port)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
