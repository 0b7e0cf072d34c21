// The official app's path to skyhose: the reference PDS (with a PLC
// directory in memory) whose default AppView is skyhose, and the official
// client logged in to it. Driven by crates/skyhose/tests/through_pds.rs:
//
//   1. starts PLC and the PDS on loopback, with PDS_BSKY_APP_VIEW_URL /
//      PDS_BSKY_APP_VIEW_DID from SKYHOSE_URL / SKYHOSE_DID, and prints one
//      line `{"plc": URL, "pds": URL}` for the test to start skyhose on the
//      PDS's firehose;
//   2. waits for a line on stdin (skyhose is serving), creates the accounts
//      and their records, waits until skyhose has indexed them;
//   3. runs STEPS in order, each through the PDS unless it says otherwise,
//      and exits 0 when every one passed.
//
// New steps go at the end of STEPS: each gets the shared `world` (agents,
// accounts, records, helpers) and throws on a failed check.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'

import { AtpAgent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { PDS, envToCfg, envToSecrets, readEnv } from '@atproto/pds'
import { Database as PlcDatabase, PlcServer } from '@did-plc/server'

const SKYHOSE_URL = process.env.SKYHOSE_URL
const SKYHOSE_DID = process.env.SKYHOSE_DID
if (!SKYHOSE_URL || !SKYHOSE_DID) {
  console.error('SKYHOSE_URL and SKYHOSE_DID are required')
  process.exit(2)
}

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Polls `probe` until it returns a truthy value, for at most `ms`. */
async function until(what, probe, ms = 30_000) {
  const deadline = Date.now() + ms
  let last
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value) return value
    } catch (err) {
      last = err
    }
    await sleep(200)
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`)
}

/** A call straight to skyhose, as a PDS makes it, with `token`. */
async function direct(method, token, { params, body } = {}) {
  const query = params ? `?${new URLSearchParams(params)}` : ''
  const headers = token ? { authorization: `Bearer ${token}` } : {}
  const init = body
    ? { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) }
    : { headers }
  const res = await fetch(`${SKYHOSE_URL}/xrpc/${method}${query}`, init)
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null, contentType: res.headers.get('content-type') }
}

/** A token the PDS signs with the account's key, for `aud` and `lxm`. */
async function serviceAuth(agent, aud, lxm) {
  const res = await agent.com.atproto.server.getServiceAuth({ aud, lxm })
  return res.data.token
}

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url')
const claimsOf = (token) => JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString())
/** `token` with its claims changed and its signature kept. */
const withClaims = (token, change) => {
  const [header, , signature] = token.split('.')
  return `${header}.${b64url({ ...claimsOf(token), ...change })}.${signature}`
}

async function expectRefused(what, res, status, name) {
  check(
    res.status === status && res.body?.error === name,
    `${what}: expected ${status} ${name}, got ${res.status} ${JSON.stringify(res.body)}`,
  )
}

const STEPS = [
  [
    'the timeline through the PDS shows the followed accounts\' posts',
    async ({ alice, posts }) => {
      const res = await alice.getTimeline({ limit: 50 })
      const uris = res.data.feed.map((item) => item.post.uri)
      check(uris.includes(posts.bob.uri), `bob's post in the timeline: ${uris}`)
      check(uris.includes(posts.carol.uri), `carol's post in the timeline: ${uris}`)
      const bobs = res.data.feed.find((item) => item.post.uri === posts.bob.uri)
      check(bobs.post.bookmarkCount === 0, 'bookmarkCount 0 before any bookmark')
      check(bobs.post.viewer?.bookmarked === false, 'viewer.bookmarked false')
    },
  ],
  [
    'muting an actor: getMutes, viewer.muted, and the timeline leaves them out',
    async ({ alice, accounts, posts }) => {
      await alice.app.bsky.graph.muteActor({ actor: accounts.carol.did })
      // Idempotent: a second mute changes nothing.
      await alice.app.bsky.graph.muteActor({ actor: accounts.carol.did })
      const mutes = await alice.app.bsky.graph.getMutes({})
      check(
        mutes.data.mutes.length === 1 && mutes.data.mutes[0].did === accounts.carol.did,
        `getMutes lists carol once: ${JSON.stringify(mutes.data)}`,
      )
      check(mutes.data.mutes[0].viewer?.muted === true, 'getMutes: viewer.muted')
      const profile = await alice.getProfile({ actor: accounts.carol.did })
      check(profile.data.viewer?.muted === true, `getProfile: viewer.muted ${JSON.stringify(profile.data.viewer)}`)
      const timeline = await alice.getTimeline({ limit: 50 })
      const uris = timeline.data.feed.map((item) => item.post.uri)
      check(!uris.includes(posts.carol.uri), 'the muted account is left out of the timeline')
      check(uris.includes(posts.bob.uri), 'the others stay')
    },
  ],
  [
    'bookmarking a post: getBookmarks, bookmarkCount 1, viewer.bookmarked',
    async ({ alice, posts }) => {
      const subject = { uri: posts.bob.uri, cid: posts.bob.cid }
      await alice.app.bsky.bookmark.createBookmark(subject)
      await alice.app.bsky.bookmark.createBookmark(subject)
      const res = await alice.app.bsky.bookmark.getBookmarks({})
      check(res.data.bookmarks.length === 1, `one bookmark: ${JSON.stringify(res.data)}`)
      const [bookmark] = res.data.bookmarks
      check(bookmark.subject.uri === posts.bob.uri, 'the bookmark names the post')
      check(bookmark.item.uri === posts.bob.uri, 'the bookmark shows the post')
      check(bookmark.item.bookmarkCount === 1, `bookmarkCount 1: ${bookmark.item.bookmarkCount}`)
      check(bookmark.item.viewer?.bookmarked === true, 'viewer.bookmarked')
      const post = await alice.getPosts({ uris: [posts.bob.uri] })
      check(post.data.posts[0].bookmarkCount === 1, 'getPosts: bookmarkCount 1')
    },
  ],
  [
    'notifications: listed unread, then cleared by updateSeen',
    async ({ alice }) => {
      const before = await alice.app.bsky.notification.listNotifications({})
      check(before.data.notifications.length > 0, 'alice has notifications')
      check(before.data.notifications.every((n) => !n.isRead), 'all unread before updateSeen')
      const unread = await alice.app.bsky.notification.getUnreadCount({})
      check(unread.data.count === before.data.notifications.length, `unread count ${unread.data.count}`)
      const seenAt = new Date().toISOString()
      await alice.app.bsky.notification.updateSeen({ seenAt })
      const after = await alice.app.bsky.notification.listNotifications({})
      check(after.data.notifications.every((n) => n.isRead), 'all read after updateSeen')
      check(after.data.seenAt !== undefined, 'seenAt is given back')
      const cleared = await alice.app.bsky.notification.getUnreadCount({})
      check(cleared.data.count === 0, `no unread after updateSeen: ${cleared.data.count}`)
    },
  ],
  [
    'muting a thread silences its notifications',
    async ({ alice, posts, reply }) => {
      const about = (n) => n.uri === reply.uri || n.reasonSubject === posts.alice.uri
      // Counted since long ago, so that the earlier updateSeen reads none.
      const unread = async () =>
        (await alice.app.bsky.notification.getUnreadCount({ seenAt: '2000-01-01T00:00:00.000Z' })).data.count
      const before = await alice.app.bsky.notification.listNotifications({})
      const silenced = before.data.notifications.filter(about).length
      check(silenced > 0, 'notifications about alice\'s thread')
      const counted = await unread()
      await alice.app.bsky.graph.muteThread({ root: posts.alice.uri })
      const muted = await alice.app.bsky.notification.listNotifications({})
      check(!muted.data.notifications.some(about), 'none while the thread is muted')
      check(muted.data.notifications.length > 0, 'the others stay')
      const mutedCount = await unread()
      check(mutedCount === counted - silenced, `unread count ${counted} less ${silenced}: ${mutedCount}`)
      const thread = await alice.getPosts({ uris: [posts.alice.uri] })
      check(thread.data.posts[0].viewer?.threadMuted === true, 'viewer.threadMuted')
      await alice.app.bsky.graph.unmuteThread({ root: posts.alice.uri })
      const after = await alice.app.bsky.notification.listNotifications({})
      check(after.data.notifications.some(about), 'back after unmuting')
    },
  ],
  [
    'private state belongs to its account: bob sees none of alice\'s',
    async ({ bob, posts }) => {
      const mutes = await bob.app.bsky.graph.getMutes({})
      check(mutes.data.mutes.length === 0, 'bob mutes nobody')
      const bookmarks = await bob.app.bsky.bookmark.getBookmarks({})
      check(bookmarks.data.bookmarks.length === 0, 'bob bookmarked nothing')
      // Deleting a bookmark bob does not have removes nothing of alice's.
      await bob.app.bsky.bookmark.deleteBookmark({ uri: posts.bob.uri })
      const post = await bob.getPosts({ uris: [posts.bob.uri] })
      check(post.data.posts[0].bookmarkCount === 1, 'alice\'s bookmark stays')
      check(post.data.posts[0].viewer?.bookmarked === false, 'not bookmarked by bob')
    },
  ],
  [
    'refusals straight to skyhose, with the official error names',
    async ({ alice, bob, accounts }) => {
      const method = 'app.bsky.graph.getMutes'
      const good = await serviceAuth(alice, SKYHOSE_DID, method)
      const ok = await direct(method, good)
      check(ok.status === 200 && ok.body.mutes.length === 1, `a good token works: ${JSON.stringify(ok)}`)
      await expectRefused(
        'another audience',
        await direct(method, await serviceAuth(alice, 'did:web:other.test', method)),
        401,
        'BadJwtAudience',
      )
      await expectRefused(
        'a token for another method',
        await direct(method, await serviceAuth(alice, SKYHOSE_DID, 'app.bsky.bookmark.getBookmarks')),
        401,
        'BadJwtLexiconMethod',
      )
      await expectRefused(
        'an expired token',
        await direct(method, withClaims(good, { exp: Math.floor(Date.now() / 1000) - 3600 })),
        401,
        'JwtExpired',
      )
      await expectRefused(
        'a token claiming alice signed by bob',
        await direct(method, withClaims(await serviceAuth(bob, SKYHOSE_DID, method), { iss: accounts.alice.did })),
        401,
        'BadJwtSignature',
      )
      const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claimsOf(good))}.`
      await expectRefused('an unsigned token', await direct(method, unsigned), 401, 'BadJwt')
      const write = 'app.bsky.graph.muteActor'
      await expectRefused(
        'a write without a token',
        await direct(write, null, { body: { actor: accounts.bob.did } }),
        401,
        'AuthMissing',
      )
      const muted = await direct(write, await serviceAuth(alice, SKYHOSE_DID, write), {
        body: { actor: accounts.bob.did },
      })
      check(
        muted.status === 200 && muted.body === null && muted.contentType === null,
        `a procedure without output: 200, empty, no content type: ${JSON.stringify(muted)}`,
      )
      await direct('app.bsky.graph.unmuteActor', await serviceAuth(alice, SKYHOSE_DID, 'app.bsky.graph.unmuteActor'), {
        body: { actor: accounts.bob.did },
      })
    },
  ],
]

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'skyhose-pds-'))
  const plcPort = await freePort()
  const plc = PlcServer.create({ db: PlcDatabase.mock(), port: plcPort })
  await plc.start()
  const plcUrl = `http://127.0.0.1:${plcPort}`

  const pdsPort = await freePort()
  const rotation = await Secp256k1Keypair.create({ exportable: true })
  Object.assign(process.env, {
    PDS_PORT: String(pdsPort),
    PDS_HOSTNAME: 'localhost',
    PDS_DEV_MODE: 'true',
    PDS_DATA_DIRECTORY: dir,
    PDS_BLOBSTORE_DISK_LOCATION: join(dir, 'blobs'),
    PDS_DID_PLC_URL: plcUrl,
    PDS_JWT_SECRET: randomBytes(16).toString('hex'),
    PDS_ADMIN_PASSWORD: randomBytes(16).toString('hex'),
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: Buffer.from(await rotation.export()).toString('hex'),
    PDS_INVITE_REQUIRED: 'false',
    PDS_SERVICE_HANDLE_DOMAINS: '.test',
    PDS_BSKY_APP_VIEW_URL: SKYHOSE_URL,
    PDS_BSKY_APP_VIEW_DID: SKYHOSE_DID,
    LOG_ENABLED: 'false',
  })
  const env = readEnv()
  const pds = await PDS.create(envToCfg(env), envToSecrets(env))
  await pds.start()
  const pdsUrl = `http://127.0.0.1:${pdsPort}`
  console.log(JSON.stringify({ plc: plcUrl, pds: pdsUrl }))

  let failed = 0
  try {
    const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
    await lines.next()

    const accounts = {}
    const agents = {}
    for (const name of ['alice', 'bob', 'carol']) {
      const agent = new AtpAgent({ service: pdsUrl })
      await agent.createAccount({
        handle: `${name}.test`,
        email: `${name}@example.com`,
        password: `${name}-password`,
      })
      agents[name] = agent
      accounts[name] = { did: agent.session.did, handle: `${name}.test` }
    }
    const { alice, bob, carol } = agents
    await alice.follow(accounts.bob.did)
    await alice.follow(accounts.carol.did)
    const posts = {
      alice: await alice.post({ text: 'hello from alice' }),
      bob: await bob.post({ text: 'hello from bob' }),
      carol: await carol.post({ text: 'hello from carol' }),
    }
    // Notifications for alice: a like, a follow and a reply.
    await bob.like(posts.alice.uri, posts.alice.cid)
    await bob.follow(accounts.alice.did)
    const reply = await carol.post({
      text: 'a reply to alice',
      reply: { root: posts.alice, parent: posts.alice },
    })

    // Logging in as the app does.
    for (const name of ['alice', 'bob']) {
      const agent = new AtpAgent({ service: pdsUrl })
      await agent.login({ identifier: `${name}.test`, password: `${name}-password` })
      agents[name] = agent
    }
    await until('skyhose to index the records', async () => {
      const res = await direct('app.bsky.feed.getPosts', null, { params: { uris: reply.uri } })
      return res.status === 200 && res.body.posts.length === 1
    })

    const world = { alice: agents.alice, bob: agents.bob, accounts, posts, reply, pdsUrl, direct, serviceAuth }
    for (const [name, step] of STEPS) {
      try {
        await step(world)
        console.log(`ok: ${name}`)
      } catch (err) {
        failed += 1
        console.log(`FAILED: ${name}: ${err?.stack ?? err}`)
      }
    }
  } finally {
    await pds.destroy()
    await plc.destroy()
    rmSync(dir, { recursive: true, force: true })
  }
  console.log(failed === 0 ? `all ${STEPS.length} steps passed` : `${failed} of ${STEPS.length} steps failed`)
  process.exit(failed === 0 ? 0 : 1)
}

main().catch((err) => {
  console.error(err?.stack ?? err)
  process.exit(1)
})
