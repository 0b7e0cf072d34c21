// Preloaded with --require: every server this process starts listens on
// 127.0.0.1 only, whatever host (or none) its code asks for. dev-env's
// services default to all interfaces.
'use strict'
const net = require('node:net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'object' && args[0] !== null && !Array.isArray(args[0])) {
    if (args[0].path === undefined) args[0] = { ...args[0], host: '127.0.0.1' }
  } else if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = args[0]
    let rest = args.slice(1)
    if (typeof rest[0] === 'string') rest = rest.slice(1)
    args = [port, '127.0.0.1', ...rest]
  }
  return listen.apply(this, args)
}
