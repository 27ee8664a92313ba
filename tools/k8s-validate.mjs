#!/usr/bin/env node
// Offline validation of Kubernetes objects of built-in kinds (and a minimal structural check of
// monitoring.coreos.com/v1 ServiceMonitor), for tests/install/run.py. No cluster, no network
// once the models are installed: the npm package kubernetes-models (pinned below) ships the
// OpenAPI schemas of every built-in kind as compiled validators; it is installed on first use
// into build/tools/kubernetes-models/ (or $STRAIT_TOOLS_DIR/kubernetes-models/).
//
//   node tools/k8s-validate.mjs < objects.json      (a JSON list of {"where": "...", "object": {...}})
//   node tools/k8s-validate.mjs --install            (only installs the models; prints the folder)
//
// Prints a JSON list, one entry per input object: {"where", "kind", "errors": [strings]}; exits
// 1 when any object has an error, 2 on bad input or a failed install.
//
// Per object, in order:
//   - apiVersion/kind -> the model class (<group>/<version>/<Kind>.js, the class's own
//     apiVersion and kind must match). An unknown kind is an error, and so is any alpha or beta
//     version of a built-in group (removed or not served by default in current Kubernetes);
//   - the model's validate() (types, enums, required fields, formats of the schema);
//   - strict field validation, as `kubectl apply` does by default: every field must be one the
//     schema knows. kubernetes-models' validators let unknown fields through, so the known
//     fields come from the package's TypeScript declarations (<Kind>.d.ts and the interfaces it
//     imports), read once per type;
//   - a few checks the apiserver makes beyond the schema: metadata.name a DNS subdomain (a
//     DNS-1035 label for Services), label keys and values, container and port names (port
//     names at most 15 characters), a workload's selector matching its pod template's labels.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const PKG = "kubernetes-models";
const VERSION = "5.1.0";  // Kubernetes 1.34 schemas; its package.json asks for node >= 22 but
                          // it is plain ES2022 and runs on Debian's node 20 (tested)
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const DEST = path.join(process.env.STRAIT_TOOLS_DIR || path.join(ROOT, "build", "tools"), PKG);
const MODELS = path.join(DEST, "node_modules", PKG);

function install() {
  const pj = path.join(MODELS, "package.json");
  if (fs.existsSync(pj) && JSON.parse(fs.readFileSync(pj, "utf8")).version === VERSION) return;
  const part = `${DEST}.${process.pid}`;
  fs.rmSync(part, { recursive: true, force: true });
  fs.mkdirSync(part, { recursive: true });
  process.stderr.write(`k8s-validate: fetching ${PKG}@${VERSION} from the npm registry\n`);
  try {
    execFileSync("npm", ["install", "--silent", "--no-save", "--no-audit", "--no-fund",
      "--no-package-lock", "--engine-strict=false", `${PKG}@${VERSION}`],
      { cwd: part, stdio: ["ignore", "ignore", "inherit"] });
    fs.rmSync(DEST, { recursive: true, force: true });
    fs.renameSync(part, DEST);  // same folder, so a concurrent run never sees half an install
  } finally {
    fs.rmSync(part, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// Known fields, from the TypeScript declarations

const declCache = new Map();  // .d.ts path -> {imports: Map, interfaces: Map name -> props}

function parseDecl(file) {
  if (declCache.has(file)) return declCache.get(file);
  const src = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  const imports = new Map();
  for (const m of src.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
      imports.set(name.split(/\s+as\s+/).pop(), m[2]);
    }
  }
  const interfaces = new Map();
  for (const m of src.matchAll(/export interface (\w+)[^{]*\{/g)) {
    let depth = 1, i = m.index + m[0].length;
    const start = i;
    while (depth > 0 && i < src.length) {
      if (src[i] === "{") depth++;
      else if (src[i] === "}") depth--;
      i++;
    }
    const body = src.slice(start, i - 1);
    const props = new Map();
    // top-level members: split at ';' outside braces/brackets
    let d = 0, cur = "";
    for (const ch of body) {
      if (ch === "{" || ch === "<" || ch === "(" || ch === "[") d++;
      if (ch === "}" || ch === ">" || ch === ")" || ch === "]") d--;
      if (ch === ";" && d === 0) {
        const pm = cur.trim().match(/^"([^"]+)"\??\s*:\s*([\s\S]+)$/);
        if (pm) props.set(pm[1], pm[2].trim());
        cur = "";
      } else cur += ch;
    }
    interfaces.set(m[1], props);
  }
  const out = { file, imports, interfaces };
  declCache.set(file, out);
  return out;
}

function resolveImport(fromFile, spec) {
  let p;
  if (spec.startsWith(".")) p = path.resolve(path.dirname(fromFile), spec);
  else p = path.join(DEST, "node_modules", spec);
  p = p.replace(/\.js$/, "");
  return p + ".d.ts";
}

// A type of a field: {obj: [decl, interface name]} | {array: type} | {map: type} | {leaf: true}
function parseType(decl, t) {
  t = t.trim();
  let m;
  if ((m = t.match(/^Array<([\s\S]*)>$/))) return { array: parseType(decl, m[1]) };
  if ((m = t.match(/^\{\s*\[key: string\]\s*:\s*([\s\S]*?);?\s*\}$/))) return { map: parseType(decl, m[1]) };
  if (/^\w+$/.test(t)) {
    if (decl.interfaces.has(t)) return { obj: [decl, t] };
    if (decl.imports.has(t)) {
      const f = resolveImport(decl.file, decl.imports.get(t));
      if (fs.existsSync(f)) {
        const d2 = parseDecl(f);
        const main = [...d2.interfaces.keys()][0];
        // an alias of a scalar (Quantity, IntOrString, Time) declares no interface
        if (main && d2.interfaces.size > 0 && aliasOf(f, t) === main) return { obj: [d2, main] };
      }
    }
  }
  return { leaf: true };
}

const aliasCache = new Map();
function aliasOf(file, exportedName) {  // `export type { IProbe as IIoK8sApiCoreV1Probe }` -> IProbe
  const key = file + "#" + exportedName;
  if (!aliasCache.has(key)) {
    const src = fs.readFileSync(file, "utf8");
    let found = null;
    for (const m of src.matchAll(/export type \{([^}]*)\}/g)) {
      for (const part of m[1].split(",")) {
        const [a, b] = part.trim().split(/\s+as\s+/);
        if ((b || a) === exportedName) found = a;
      }
    }
    aliasCache.set(key, found);
  }
  return aliasCache.get(key);
}

function unknownFields(value, type, where, out) {
  if (value === null || value === undefined) return;
  if (type.array) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, type.array, `${where}/${i}`, out));
  } else if (type.map) {
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) unknownFields(v, type.map, `${where}/${k}`, out);
    }
  } else if (type.obj) {
    if (typeof value !== "object" || Array.isArray(value)) return;  // validate() reports it
    let [decl, name] = type.obj;
    let props = decl.interfaces.get(name);
    if (props.size === 0) {
      // an empty interface is any JSON (RawExtension, JSON); JSONSchemaPropsOrArray and
      // JSONSchemaPropsOrBool hold a JSONSchemaProps when they hold an object
      const m = name.match(/^I(JSONSchemaProps)Or(Array|Bool)$/);
      const f = m && path.join(path.dirname(decl.file), "JSONSchemaProps.d.ts");
      if (!f || !fs.existsSync(f)) return;
      decl = parseDecl(f);
      name = "IJSONSchemaProps";
      props = decl.interfaces.get(name);
    }
    for (const [k, v] of Object.entries(value)) {
      if (!props.has(k)) out.push(`${where}/${k}: unknown field "${k}"`);
      else unknownFields(v, parseType(decl, props.get(k)), `${where}/${k}`, out);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Checks the apiserver makes beyond the OpenAPI schema

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const PORT_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

function dnsSubdomain(s) {
  return typeof s === "string" && s.length <= 253 && s.split(".").every((l) => l.length <= 63 && DNS_LABEL.test(l));
}

function labelErrors(labels, where, out) {
  for (const [k, v] of Object.entries(labels || {})) {
    const slash = k.lastIndexOf("/");
    const prefix = slash >= 0 ? k.slice(0, slash) : null, name = k.slice(slash + 1);
    if ((prefix !== null && !dnsSubdomain(prefix)) || name.length > 63 || !LABEL_NAME.test(name)) {
      out.push(`${where}: invalid label key "${k}"`);
    }
    if (typeof v !== "string" || v.length > 63 || !LABEL_VALUE.test(v)) {
      out.push(`${where}/${k}: invalid label value ${JSON.stringify(v)} (at most 63 characters, alphanumeric, '-', '_' or '.' inside)`);
    }
  }
}

function portName(n) {  // IANA_SVC_NAME
  return typeof n === "string" && n.length <= 15 && PORT_NAME.test(n) && !n.includes("--") && /[a-z]/.test(n);
}

function podSpecErrors(spec, where, out) {
  if (!spec || typeof spec !== "object") return;
  const names = new Set();
  for (const key of ["initContainers", "containers"]) {
    (spec[key] || []).forEach((c, i) => {
      const w = `${where}/${key}/${i}`;
      if (typeof c.name !== "string" || c.name.length > 63 || !DNS_LABEL.test(c.name)) out.push(`${w}/name: invalid container name ${JSON.stringify(c.name)}`);
      if (names.has(c.name)) out.push(`${w}/name: duplicate container name "${c.name}"`);
      names.add(c.name);
      (c.ports || []).forEach((p, j) => {
        if (p.name !== undefined && !portName(p.name)) out.push(`${w}/ports/${j}/name: invalid port name "${p.name}" (at most 15 characters, lowercase alphanumeric or '-', one letter at least)`);
      });
    });
  }
  const vols = new Set();
  (spec.volumes || []).forEach((v, i) => {
    if (vols.has(v.name)) out.push(`${where}/volumes/${i}: duplicate volume name "${v.name}"`);
    vols.add(v.name);
  });
  for (const key of ["initContainers", "containers"]) {
    (spec[key] || []).forEach((c, i) => (c.volumeMounts || []).forEach((m, j) => {
      if (!vols.has(m.name)) out.push(`${where}/${key}/${i}/volumeMounts/${j}: no volume named "${m.name}"`);
    }));
  }
}

function extraErrors(o, out) {
  const md = o.metadata || {};
  if (md.name === undefined && md.generateName === undefined) out.push("/metadata/name: required");
  else if (md.name !== undefined) {
    const ok = o.kind === "Service" ? md.name.length <= 63 && DNS_1035.test(md.name) : dnsSubdomain(md.name);
    if (!ok) out.push(`/metadata/name: invalid name "${md.name}" (${o.kind === "Service" ? "a DNS-1035 label: at most 63 characters, lowercase, starting with a letter" : "a DNS subdomain"})`);
  }
  labelErrors(md.labels, "/metadata/labels", out);
  const tpl = o.spec && o.spec.template;
  if (tpl && typeof tpl === "object" && ["Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"].includes(o.kind)) {
    labelErrors((tpl.metadata || {}).labels, "/spec/template/metadata/labels", out);
    podSpecErrors(tpl.spec, "/spec/template/spec", out);
    const sel = (o.spec.selector || {}).matchLabels;
    if (o.kind !== "Job" && !o.spec.selector) out.push("/spec/selector: required");
    for (const [k, v] of Object.entries(sel || {})) {
      if (((tpl.metadata || {}).labels || {})[k] !== v) out.push(`/spec/selector/matchLabels/${k}: selector does not match the template's labels`);
    }
  }
  if (o.kind === "Pod") podSpecErrors(o.spec, "/spec", out);
  if (o.kind === "Service" && o.spec) {
    const seen = new Set();
    (o.spec.ports || []).forEach((p, i) => {
      if ((o.spec.ports.length > 1 || p.name !== undefined) && !portName(p.name)) out.push(`/spec/ports/${i}/name: invalid or missing port name "${p.name}" (required when there are several ports)`);
      if (seen.has(p.name)) out.push(`/spec/ports/${i}/name: duplicate port name "${p.name}"`);
      seen.add(p.name);
      if (p.nodePort !== undefined && !["NodePort", "LoadBalancer"].includes(o.spec.type)) out.push(`/spec/ports/${i}/nodePort: only for type NodePort or LoadBalancer`);
    });
  }
}

// ---------------------------------------------------------------------------------------
// ServiceMonitor (monitoring.coreos.com/v1): the operator's CRD is not ours to ship, so only a
// minimal structural check: known top-level and endpoint fields, required ones, their types.

const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;
const SM_SPEC = new Set(["endpoints", "selector", "namespaceSelector", "jobLabel", "targetLabels",
  "podTargetLabels", "sampleLimit", "targetLimit", "scrapeProtocols", "labelLimit", "labelNameLengthLimit",
  "labelValueLengthLimit", "keepDroppedTargets", "attachMetadata", "scrapeClass", "bodySizeLimit",
  "fallbackScrapeProtocol", "scrapeClassicHistograms", "nativeHistogramBucketLimit",
  "nativeHistogramMinBucketFactor", "convertClassicHistogramsToNHCB", "serviceDiscoveryRole",
  "selectorMechanism"]);
const SM_ENDPOINT = new Set(["port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
  "tlsConfig", "bearerTokenFile", "bearerTokenSecret", "authorization", "honorLabels", "honorTimestamps",
  "trackTimestampsStaleness", "basicAuth", "oauth2", "metricRelabelings", "relabelings", "proxyUrl",
  "noProxy", "proxyFromEnvironment", "proxyConnectHeader", "followRedirects", "enableHttp2",
  "filterRunning"]);

function serviceMonitorErrors(o, out) {
  for (const k of Object.keys(o)) if (!["apiVersion", "kind", "metadata", "spec"].includes(k)) out.push(`/${k}: unknown field "${k}"`);
  const md = o.metadata;
  if (!md || typeof md !== "object" || !dnsSubdomain(md.name)) out.push("/metadata/name: required, a DNS subdomain");
  else labelErrors(md.labels, "/metadata/labels", out);
  const s = o.spec;
  if (!s || typeof s !== "object" || Array.isArray(s)) { out.push("/spec: required object"); return; }
  for (const k of Object.keys(s)) if (!SM_SPEC.has(k)) out.push(`/spec/${k}: unknown field "${k}"`);
  if (!s.selector || typeof s.selector !== "object" || Array.isArray(s.selector)) out.push("/spec/selector: required object");
  else {
    for (const k of Object.keys(s.selector)) if (!["matchLabels", "matchExpressions"].includes(k)) out.push(`/spec/selector/${k}: unknown field "${k}"`);
    labelErrors(s.selector.matchLabels, "/spec/selector/matchLabels", out);
  }
  if (!Array.isArray(s.endpoints) || s.endpoints.length === 0) { out.push("/spec/endpoints: required, a non-empty list"); return; }
  s.endpoints.forEach((e, i) => {
    const w = `/spec/endpoints/${i}`;
    if (!e || typeof e !== "object" || Array.isArray(e)) { out.push(`${w}: must be an object`); return; }
    for (const k of Object.keys(e)) if (!SM_ENDPOINT.has(k)) out.push(`${w}/${k}: unknown field "${k}"`);
    if (e.port === undefined && e.targetPort === undefined) out.push(`${w}: port (a Service port name) or targetPort required`);
    if (e.port !== undefined && typeof e.port !== "string") out.push(`${w}/port: must be a string (the Service port's name)`);
    for (const k of ["interval", "scrapeTimeout"]) {
      if (e[k] !== undefined && (typeof e[k] !== "string" || !DURATION.test(e[k]))) out.push(`${w}/${k}: invalid duration ${JSON.stringify(e[k])}`);
    }
    if (e.path !== undefined && (typeof e.path !== "string" || !e.path.startsWith("/"))) out.push(`${w}/path: must be an absolute path`);
    if (e.scheme !== undefined && !["http", "https", "HTTP", "HTTPS"].includes(e.scheme)) out.push(`${w}/scheme: http or https`);
    for (const k of ["relabelings", "metricRelabelings"]) if (e[k] !== undefined && !Array.isArray(e[k])) out.push(`${w}/${k}: must be a list`);
  });
}

// ---------------------------------------------------------------------------------------

async function modelFor(apiVersion, kind) {
  if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["v1", apiVersion];
  const dir = apiVersion.includes("/") ? path.join(MODELS, group, version) : path.join(MODELS, version);
  const js = path.join(dir, kind + ".js");
  if (!/^[a-z0-9.]+$/.test(group) || !/^v[0-9a-z]+$/.test(version) || !fs.existsSync(js)) return null;
  const mod = await import(pathToFileURL(js).href);
  const cls = mod[kind];
  if (!cls || cls.apiVersion !== apiVersion || cls.kind !== kind) return null;
  return { cls, decl: js.replace(/\.js$/, ".d.ts") };
}

function ajvErrors(e) {
  const errs = e && e.errors;
  if (!Array.isArray(errs)) return [String(e && e.message ? e.message : e)];
  return errs.map((x) => {
    const extra = x.params && x.params.allowedValues ? ` (${x.params.allowedValues.join(", ")})`
      : x.params && x.params.missingProperty ? ` "${x.params.missingProperty}"` : "";
    return `${x.instancePath || "/"}: ${x.message || x.keyword}${extra}`;
  });
}

async function validateOne(o) {
  const out = [];
  if (!o || typeof o !== "object" || Array.isArray(o)) return { kind: null, errors: ["not an object"] };
  const { apiVersion, kind } = o;
  if (apiVersion === "monitoring.coreos.com/v1" && kind === "ServiceMonitor") {
    serviceMonitorErrors(o, out);
    return { kind, errors: out };
  }
  const m = await modelFor(apiVersion, kind);
  if (!m) return { kind, errors: [`unknown kind: apiVersion ${JSON.stringify(apiVersion)} kind ${JSON.stringify(kind)} is no built-in kind`] };
  if (/v[0-9]+(alpha|beta)[0-9]*$/.test(apiVersion)) {
    return { kind, errors: [`${apiVersion}: an alpha or beta version of a built-in API (removed or off by default in current Kubernetes); use the GA version`] };
  }
  try {
    new m.cls(o).validate();
  } catch (e) {
    out.push(...ajvErrors(e));
  }
  const d = parseDecl(m.decl);
  unknownFields(o, { obj: [d, [...d.interfaces.keys()][0]] }, "", out);
  extraErrors(o, out);
  return { kind, errors: out };
}

async function main() {
  try {
    install();
  } catch (e) {
    process.stderr.write(`k8s-validate: installing ${PKG}@${VERSION} failed: ${e.message}\n`);
    process.exit(2);
  }
  if (process.argv.includes("--install")) {
    process.stdout.write(DEST + "\n");
    return;
  }
  let input;
  try {
    input = JSON.parse(fs.readFileSync(0, "utf8"));
    if (!Array.isArray(input)) throw new Error("expected a JSON list");
  } catch (e) {
    process.stderr.write(`k8s-validate: bad input: ${e.message}\n`);
    process.exit(2);
  }
  const results = [];
  for (const item of input) {
    const r = await validateOne(item.object);
    results.push({ where: item.where, kind: r.kind, errors: r.errors });
  }
  process.stdout.write(JSON.stringify(results, null, 1) + "\n");
  process.exit(results.some((r) => r.errors.length) ? 1 : 0);
}

main();
