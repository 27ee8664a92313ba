"""Test certificates for Strait's TLS tests, made with the real openssl command line.

What it does: creates CAs, server and client certificates (ECDSA P-256 or RSA 2048, SANs,
chosen validity), writes them as PEM files in a folder, and builds kubernetes.io/tls Secret
manifests (and CA-bundle Secrets holding ca.crt) from them.
What it does not: cache anything between tests, or touch the system trust store.
Invariants: every file lives in the folder given; the names returned are absolute paths.
"""
import base64
import os
import subprocess

_serial = [1000]


def _run(*args, cwd=None):
    subprocess.run(["openssl"] + list(args), check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _key(path, kind):
    if kind == "rsa":
        _run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)
    elif kind == "ec":
        _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    else:
        raise ValueError("kind is 'ec' or 'rsa'")


class Cert:
    """A certificate and its key on disk: .crt (leaf, then chain), .key, .pem (crt + key)."""

    def __init__(self, crt, key, cn):
        self.crt = crt
        self.key = key
        self.cn = cn

    def crt_bytes(self):
        with open(self.crt, "rb") as f:
            return f.read()

    def key_bytes(self):
        with open(self.key, "rb") as f:
            return f.read()

    def fingerprint(self):
        """Hex SHA-256 of the leaf certificate's DER, lower case, no colons."""
        out = subprocess.run(["openssl", "x509", "-in", self.crt, "-noout", "-fingerprint",
                              "-sha256"], check=True, capture_output=True, text=True).stdout
        return out.strip().split("=", 1)[1].replace(":", "").lower()

    def pem(self):
        """crt + key in one file (HAProxy's crt format); returns its path."""
        path = self.crt[:-4] + ".pem"
        with open(path, "wb") as f:
            f.write(self.crt_bytes() + self.key_bytes())
        return path


def make_ca(folder, name="Strait Test CA", kind="ec", days=30):
    """A self-signed CA; returns a Cert."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, _safe(name))
    _key(base + ".key", kind)
    _run("req", "-x509", "-new", "-key", base + ".key", "-out", base + ".crt", "-days",
         str(days), "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Cert(base + ".crt", base + ".key", name)


def make_cert(folder, cn, sans=(), ca=None, kind="ec", days=30, not_before_days=0,
              client=False, uris=(), chain=True, name=None):
    """A leaf certificate for cn with DNS SANs sans (default: [cn]) and URI SANs uris,
    signed by ca (a Cert) or self-signed. days may be negative together with
    not_before_days to make an expired one (e.g. not_before_days=-10, days=-1: valid from
    10 days ago until yesterday). client=True makes a clientAuth certificate. With chain
    and a ca, the .crt file holds the leaf then the CA certificate. Returns a Cert."""
    os.makedirs(folder, exist_ok=True)
    base = os.path.join(folder, _safe(name or cn) + "-" + kind)
    _key(base + ".key", kind)
    dns = list(sans) if sans else ([cn] if not client else [])
    alt = ["DNS:" + d for d in dns] + ["URI:" + u for u in uris]
    ext_lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature" + ("" if kind == "ec" else ",keyEncipherment"),
                 "extendedKeyUsage=" + ("clientAuth" if client else "serverAuth")]
    if alt:
        ext_lines.append("subjectAltName=" + ",".join(alt))
    ext = base + ".ext"
    with open(ext, "w") as f:
        f.write("\n".join(ext_lines) + "\n")
    _run("req", "-new", "-key", base + ".key", "-out", base + ".csr", "-subj", "/CN=" + cn)
    signer = ca or Cert(None, base + ".key", cn)
    _serial[0] += 1
    args = ["x509", "-req", "-in", base + ".csr", "-out", base + ".leaf", "-extfile", ext,
            "-set_serial", str(_serial[0])]
    if ca:
        args += ["-CA", ca.crt, "-CAkey", ca.key]
    else:
        args += ["-signkey", signer.key]
    if days >= 0 and not_before_days == 0:
        args += ["-days", str(max(days, 1))]
        _run(*args)
    else:
        # openssl 3.0's x509 -req cannot set a start date: `openssl ca` can
        _sign_with_dates(base, ext, ca, signer, not_before_days, days)
    with open(base + ".leaf", "rb") as f:
        body = f.read()
    if ca and chain:
        with open(ca.crt, "rb") as f:
            body += f.read()
    with open(base + ".crt", "wb") as f:
        f.write(body)
    return Cert(base + ".crt", base + ".key", cn)


def _sign_with_dates(base, ext, ca, signer, not_before_days, not_after_days):
    """Signs base.csr with explicit start and end dates (days relative to now) using
    `openssl ca`, which accepts -startdate/-enddate."""
    import datetime
    now = datetime.datetime.now(datetime.timezone.utc)
    start = (now + datetime.timedelta(days=not_before_days)).strftime("%Y%m%d%H%M%SZ")
    end = (now + datetime.timedelta(days=not_after_days)).strftime("%Y%m%d%H%M%SZ")
    d = base + ".cadir"
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "index.txt"), "w").close()
    with open(os.path.join(d, "serial"), "w") as f:
        _serial[0] += 1
        f.write("%04X\n" % _serial[0])
    conf = os.path.join(d, "ca.cnf")
    with open(conf, "w") as f:
        f.write("[ca]\ndefault_ca=x\n[x]\ndir=%s\ndatabase=$dir/index.txt\nserial=$dir/serial\n"
                "new_certs_dir=$dir\ndefault_md=sha256\npolicy=p\nunique_subject=no\n"
                "[p]\ncommonName=supplied\n" % d)
    args = ["ca", "-batch", "-config", conf, "-in", base + ".csr", "-out", base + ".leaf",
            "-startdate", start, "-enddate", end, "-extfile", ext, "-notext"]
    if ca:
        args += ["-cert", ca.crt, "-keyfile", ca.key]
    else:
        args += ["-selfsign", "-keyfile", signer.key]
    _run(*args)


def _safe(s):
    return "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in s)


def _b64(b):
    return base64.b64encode(b).decode()


def tls_secret(name, cert, ns="default", ca=None):
    """A kubernetes.io/tls Secret manifest (dict) holding cert's tls.crt and tls.key (and
    ca.crt from ca, a Cert, when given)."""
    data = {"tls.crt": _b64(cert.crt_bytes()), "tls.key": _b64(cert.key_bytes())}
    if ca is not None:
        data["ca.crt"] = _b64(ca.crt_bytes())
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns}, "data": data}


def raw_tls_secret(name, crt_bytes, key_bytes, ns="default"):
    """A kubernetes.io/tls Secret from raw bytes (for broken or mismatched pairs)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": _b64(crt_bytes), "tls.key": _b64(key_bytes)}}


def ca_secret(name, ca, ns="default"):
    """An Opaque Secret holding only ca.crt (a CA bundle, as ingress-nginx's auth-tls-secret
    and proxy-ssl-secret take)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": ns},
            "data": {"ca.crt": _b64(ca.crt_bytes())}}
