// A benchmark peer of tests/bench/decode-compare.sh: decodes the DataRow stream that
// DecodeHarness --write wrote (528,416 messages of 127 bytes, ten non-NULL 8-byte columns) with the
// Parser of node-postgres' pg-protocol, and prints one line in the format of DecodeHarness: path,
// messages, values, checksum, seconds, mbps (10^6 bytes a second) and alloc (-: not measured).
//
// The file is read into one Buffer and given to a new Parser in 64 KiB slices (no copy), as a
// net.Socket's 'data' events deliver a connection's bytes; the Parser copies a message that
// straddles two slices into a buffer of its own. Every field of every dataRow message is touched.
// pg-protocol's Parser only has a text mode: each value comes as a JavaScript string decoded from
// UTF-8 (the stream's random bytes mostly become U+FFFD), so the checksum is of kind "text": each
// string's UTF-16 length and first code unit, which DecodeHarness --write computes from the rows.
//
// What pg-protocol (1.x, dist/parser.js and dist/buffer-reader.js) does not check that PgSpec's
// reader and DataRow decode do:
//   - the length word: no lower bound (below 4, the body is read from the next message's bytes,
//     or past the buffer's end: a RangeError) and no upper limit (the parser merges chunks into a
//     growing buffer until the declared length, up to 4 GiB, has arrived);
//   - the body against the length word: the column count and value lengths are read without
//     looking at the message's end, so a value longer than its message is read from the next
//     message's bytes, and bytes left over after the last value are skipped silently;
//   - value lengths below -1: read as an empty string, moving the read position backwards (what
//     follows is read from the wrong place; at the buffer's end, a RangeError);
//   - a type byte it does not know gives a DatabaseError object to the callback, not an error
//     (this harness fails on any message that is not a dataRow).
//
// Usage: NODE_PATH=DIR/node_modules node decode.js [--warmup N] [--warmup-seconds S] FILE
// (DIR holds `npm install pg-protocol`; decode-compare.sh installs it into a temporary folder).
// It warms up with at least N passes (2) and S seconds (1), then times one pass.
'use strict'

const fs = require('fs')
const { Parser } = require('pg-protocol/dist/parser')

const CHUNK = 64 * 1024

function pass (buffer) {
  const parser = new Parser()
  let messages = 0
  let values = 0
  let checksum = 0
  let wrong = null
  const callback = (message) => {
    if (message.name !== 'dataRow') {
      wrong = wrong || message
      return
    }
    const fields = message.fields
    for (let i = 0; i < fields.length; i++) {
      const value = fields[i]
      values++
      if (value !== null) {
        checksum += value.length
        if (value.length > 0) {
          checksum += value.charCodeAt(0)
        }
      }
    }
    messages++
  }
  for (let offset = 0; offset < buffer.length; offset += CHUNK) {
    parser.parse(buffer.subarray(offset, offset + CHUNK), callback)
  }
  if (wrong !== null) {
    throw new Error(`expected dataRow, read ${wrong.name}: ${wrong.message || ''}`)
  }
  if (parser.bufferLength !== 0) {
    throw new Error(`the stream ends inside a message (${parser.bufferLength} bytes left)`)
  }
  return { messages, values, checksum }
}

function main () {
  const args = process.argv.slice(2)
  let warmup = 2
  let warmupSeconds = 1
  let file = null
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--warmup' && i + 1 < args.length) {
      warmup = Number(args[++i])
    } else if (args[i] === '--warmup-seconds' && i + 1 < args.length) {
      warmupSeconds = Number(args[++i])
    } else if (file === null && !args[i].startsWith('--')) {
      file = args[i]
    } else {
      file = null
      break
    }
  }
  if (file === null || !Number.isInteger(warmup) || warmup < 0 || !(warmupSeconds >= 0)) {
    console.error('usage: node decode.js [--warmup N] [--warmup-seconds S] FILE')
    process.exit(2)
  }
  const buffer = fs.readFileSync(file)
  const started = process.hrtime.bigint()
  for (let i = 0; i < warmup || Number(process.hrtime.bigint() - started) / 1e9 < warmupSeconds; i++) {
    pass(buffer)
  }
  const start = process.hrtime.bigint()
  const t = pass(buffer)
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  console.log(`path=pg-protocol messages=${t.messages} values=${t.values} checksum=text:${t.checksum} ` +
    `seconds=${seconds.toFixed(4)} mbps=${(buffer.length / seconds / 1e6).toFixed(1)} alloc=-`)
}

main()
