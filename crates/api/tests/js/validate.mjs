// Validates recorded XRPC responses against the official lexicons with the
// official validator. Usage: node validate.mjs <lexicon dir> <cases.json>
// cases.json: [{"nsid": "...", "label": "...", "output": {...}}, ...]
// Prints one line per failure and exits 1 if any case fails.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { Lexicons } from '@atproto/lexicon'

function walk(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) walk(path, out)
    else if (name.endsWith('.json')) out.push(JSON.parse(readFileSync(path, 'utf8')))
  }
  return out
}

const [lexDir, casesPath] = process.argv.slice(2)
const lexicons = new Lexicons(walk(lexDir))
const cases = JSON.parse(readFileSync(casesPath, 'utf8'))
let failed = 0
for (const c of cases) {
  try {
    lexicons.assertValidXrpcOutput(c.nsid, c.output)
  } catch (err) {
    failed++
    console.log(`FAIL ${c.nsid} ${c.label}: ${err.message}`)
  }
}
console.log(`validated ${cases.length} responses, ${failed} failed`)
process.exit(failed ? 1 : 0)
