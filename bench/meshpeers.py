"""HAProxy and nginx as the two mesh proxies, for bench/mesh.py's same-run comparison.

Each peer runs in its own pair of pods (`pa` client, `pb` server), made like `ma`/`mb`:
`strait-controller mesh-init` (the same iptables interception: outbound TCP to 4140, inbound
to 4143, the proxy's UID 2102 excluded), the proxy as UID 2102 with one worker (haproxy
`nbthread 1`, nginx `worker_processes 1`, as the sidecars' `--workers 1`), mTLS between them
(TLS 1.3 only, P-256 ECDSA leaf certificates with the SPIFFE URI SANs our CA gives, from a
CA made here with the openssl command; the client proxy verifies the server's chain, the
server proxy requires and verifies the client's), keep-alive and pooled on both hops, and the
inbound proxy hands the verified client certificate on to the app in a header, as the
sidecar does with the identity. What they do not do that the sidecar does: route by Host or
original destination (every intercepted request goes to `pb`), balance over endpoints, check
the server's SPIFFE identity against the Service (they check the chain only), authorization.
"""
import os
import shutil
import subprocess

# haproxy-tcp: not a mesh proxy but the floor: HAProxy relaying plain TCP (no TLS, no HTTP)
# on the same path, what the kernel and two relays cost on this machine by themselves
PEERS = ("haproxy", "nginx", "haproxy-tcp")
PACKAGES = {"haproxy": "haproxy", "haproxy-tcp": "haproxy", "nginx": "nginx-light"}
OUT_PORT, IN_PORT = 4140, 4143
TD = "cluster.local"


def install(names):
    need = sorted({PACKAGES[n] for n in names if not shutil.which(PACKAGES[n].split("-")[0])})
    if need:
        subprocess.run(["apt-get", "install", "-y", "-qq", *need], check=True,
                       stdout=subprocess.DEVNULL)


def _openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_certs(d):
    """A CA and two leaves (client: sa frontend, server: sa backend) in d; returns paths."""
    ca_key, ca = os.path.join(d, "peer-ca.key"), os.path.join(d, "peer-ca.pem")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/O=bench peer CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out = {"ca": ca}
    for role, sa, eku in (("client", "frontend", "clientAuth"),
                          ("server", "backend", "serverAuth")):
        key, csr, crt = (os.path.join(d, "peer-%s.%s" % (role, x)) for x in ("key", "csr", "pem"))
        ext = os.path.join(d, "peer-%s.ext" % role)
        with open(ext, "w") as f:
            # nginx's proxy_ssl_verify checks a DNS name: the server leaf carries one too
            f.write("subjectAltName=URI:spiffe://%s/ns/shop/sa/%s%s\n"
                    "extendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\n" % (
                        TD, sa, ",DNS:backend.shop.svc" if role == "server" else "", eku))
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", "/")
        _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                 "-days", "1", "-extfile", ext, "-out", crt)
        both = os.path.join(d, "peer-%s.both.pem" % role)  # haproxy: certificate and key
        with open(both, "w") as f, open(crt) as c, open(key) as k:
            f.write(c.read() + k.read())
        for p in (key, crt, both, ca):
            os.chmod(p, 0o644)  # the proxies run as UID 2102; a throwaway bench CA
        out[role] = (crt, key, both)
    return out


def _haproxy(d, name, client, server):
    cmds = {}
    for pod, cfg in (("pa", client), ("pb", server)):
        path = os.path.join(d, "%s-%s.cfg" % (name, pod))
        with open(path, "w") as f:
            f.write(cfg)
        cmds[pod] = ["haproxy", "-db", "-f", path]
    return cmds


def haproxy_tcp_cmds(d, certs, server_ip):
    common = ("global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode tcp\n"
              "  timeout connect 5s\n  timeout client 120s\n  timeout server 120s\n")
    return _haproxy(d, "haproxy-tcp",
                    common + "listen out\n  bind :%d\n  server pb %s:8080\n" % (OUT_PORT,
                                                                                 server_ip),
                    common + "listen in\n  bind :%d\n  server app 127.0.0.1:8080\n" % IN_PORT)


def haproxy_cmds(d, certs, server_ip):
    """{pod: argv} for the client proxy in pa and the server proxy in pb."""
    common = ("global\n  nbthread 1\n  maxconn 4000\n  ssl-default-bind-options ssl-min-ver "
              "TLSv1.3\n  ssl-default-server-options ssl-min-ver TLSv1.3\n"
              "defaults\n  mode http\n  timeout connect 5s\n  timeout client 120s\n"
              "  timeout server 120s\n  option http-keep-alive\n  http-reuse always\n")
    client = common + (
        "frontend out\n  bind :%d\n  default_backend mesh\n"
        "backend mesh\n  server pb %s:8080 ssl crt %s ca-file %s verify required "
        "alpn http/1.1\n" % (OUT_PORT, server_ip, certs["client"][2], certs["ca"]))
    server = common + (
        "frontend in\n  bind :%d ssl crt %s ca-file %s verify required alpn http/1.1\n"
        "  http-request set-header X-Client-Cert-Sha1 %%[ssl_c_sha1,hex]\n"
        "  default_backend app\n"
        "backend app\n  server app 127.0.0.1:8080\n" % (IN_PORT, certs["server"][2], certs["ca"]))
    return _haproxy(d, "haproxy", client, server)


def nginx_cmds(d, certs, server_ip):
    cmds = {}
    for pod in ("pa", "pb"):
        wd = os.path.join(d, "nginx-" + pod)
        os.makedirs(wd, exist_ok=True)
        os.chmod(wd, 0o777)
        if pod == "pa":
            crt, key, _ = certs["client"]
            server = (
                "upstream mesh { server %s:8080; keepalive 64; }\n"
                "server { listen %d backlog=4096; location / { proxy_pass https://mesh;\n"
                "  proxy_http_version 1.1; proxy_set_header Connection \"\";\n"
                "  proxy_ssl_certificate %s; proxy_ssl_certificate_key %s;\n"
                "  proxy_ssl_trusted_certificate %s; proxy_ssl_verify on;\n"
                "  proxy_ssl_name backend.shop.svc; proxy_ssl_server_name on;\n"
                "  proxy_ssl_protocols TLSv1.3; proxy_ssl_session_reuse on; } }\n" % (
                    server_ip, OUT_PORT, crt, key, certs["ca"]))
        else:
            crt, key, _ = certs["server"]
            server = (
                "upstream app { server 127.0.0.1:8080; keepalive 64; }\n"
                "server { listen %d ssl backlog=4096; ssl_protocols TLSv1.3;\n"
                "  ssl_certificate %s; ssl_certificate_key %s;\n"
                "  ssl_client_certificate %s; ssl_verify_client on;\n"
                "  location / { proxy_pass http://app; proxy_http_version 1.1;\n"
                "  proxy_set_header Connection \"\";\n"
                "  proxy_set_header X-Client-Cert-Sha1 $ssl_client_fingerprint; } }\n" % (
                    IN_PORT, crt, key, certs["ca"]))
        conf = os.path.join(wd, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                "daemon off; worker_processes 1; pid %s/pid; error_log %s/error.log warn;\n"
                "events { worker_connections 4000; }\n"
                "http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;\n"
                "  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;\n"
                "  uwsgi_temp_path %s; scgi_temp_path %s;\n%s}\n" % ((wd,) * 7 + (server,)))
        cmds[pod] = ["nginx", "-e", os.path.join(wd, "error.log"), "-p", wd, "-c", conf]
    return cmds


def commands(name, d, certs, server_ip):
    return {"haproxy": haproxy_cmds, "nginx": nginx_cmds,
            "haproxy-tcp": haproxy_tcp_cmds}[name](d, certs, server_ip)
