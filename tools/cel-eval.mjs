// Evaluates Kubernetes-style CEL validation rules (x-kubernetes-validations) for the tests:
// reads {"rules": [RULE, ...], "jobs": [[RULE_INDEX, SELF], ...]} as JSON on stdin, writes
// {"compile": [null | ERROR, ...], "results": [true | false | "error: ...", ...]} on stdout.
// What it does not: type-check against the schema or estimate cost (the apiserver does both);
// it only runs each rule with `self` bound, as the apiserver does at the rule's node.
// Integers: JSON numbers without a fraction become CEL ints (BigInt), as the CRD has integer
// fields only (the Python side checks that no field is of type number).
//   node tools/cel-eval.mjs DIR   (DIR holds node_modules/@marcbachmann/cel-js, see tools/cel.sh)
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

const dir = process.argv[2]
if (!dir) {
  process.stderr.write('usage: node cel-eval.mjs DIR\n')
  process.exit(2)
}
const {parse} = await import(pathToFileURL(join(dir, 'node_modules/@marcbachmann/cel-js/lib/index.js')))

function toCel (v) {
  if (typeof v === 'number') return Number.isInteger(v) ? BigInt(v) : v
  if (Array.isArray(v)) return v.map(toCel)
  if (v !== null && typeof v === 'object') {
    const o = {}
    for (const [k, x] of Object.entries(v)) o[k] = toCel(x)
    return o
  }
  return v
}

const input = JSON.parse(readFileSync(0, 'utf8'))
const compiled = []
const compile = input.rules.map((r, i) => {
  try {
    compiled[i] = parse(r)
    return null
  } catch (e) {
    compiled[i] = null
    return String(e.message).split('\n')[0]
  }
})
const results = input.jobs.map(([i, self]) => {
  if (!compiled[i]) return 'error: rule does not compile'
  try {
    const v = compiled[i]({self: toCel(self)})
    return typeof v === 'boolean' ? v : 'error: rule returned ' + typeof v
  } catch (e) {
    return 'error: ' + String(e.message).split('\n')[0]
  }
})
process.stdout.write(JSON.stringify({compile, results}) + '\n')
