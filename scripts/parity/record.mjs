// Records what skyhose's parity test replays: runs PLC, the reference PDS and
// the official `bsky` AppView (@atproto/dev-env) on loopback, drives activity
// through the PDS, then writes
//   frames.cap       the PDS's subscribeRepos frames, read live from before the
//                    activity until after it (docs/capture-format.md)
//   dids.json        the PLC's DID documents of every account
//   fixtures/*.json  per method: each request (parameters, viewer) and the
//                    official AppView's status and body
//   pds/             what the PDS serves a backfill at the end: listRepos
//                    pages, each account's getRepo CAR (repos/<did>.car, or
//                    the error in repos.json) and each handle's
//                    /.well-known/atproto-did answer
// into the directory given as the first argument. Answers are stored as
// received; the test normalises both sides with one rule set.
import { mkdir, writeFile } from 'node:fs/promises'
import http from 'node:http'
import path from 'node:path'
import { TestNetwork } from '@atproto/dev-env'
import sharp from 'sharp'

const out = process.argv[2]
if (!out) throw new Error('usage: record.mjs OUTPUT_DIR')

const network = await TestNetwork.create({
  dbPostgresUrl: process.env.DB_POSTGRES_URL,
  dbPostgresSchema: process.env.DB_POSTGRES_SCHEMA,
})
try {
  await record(network)
} finally {
  await network.close()
}

async function record(network) {
  const sc = network.getSeedClient()
  const agent = sc.agent
  const names = ['alice', 'bob', 'carol', 'dan', 'eve', 'fred', 'gina']
  const did = {}
  for (const name of names) {
    const acct = await sc.createAccount(name, {
      handle: `${name}.test`,
      email: `${name}@test.com`,
      password: `${name}-pass`,
    })
    did[name] = acct.did
  }
  const { alice, bob, carol, dan, eve, fred, gina } = did
  // Subscribed before the activity: a replay afterwards would miss what
  // the PDS purges when an account is deleted (fred's earlier records).
  const frames = captureFrames(network)
  await frames.started
  const put = (by, collection, record, rkey) =>
    agent.com.atproto.repo
      .createRecord(
        { repo: by, collection, rkey, record },
        { headers: sc.getHeaders(by), encoding: 'application/json' },
      )
      .then((r) => r.data)
  const now = () => new Date().toISOString()

  const del = (by, uri) =>
    agent.com.atproto.repo.deleteRecord(
      { repo: by, collection: uri.collection, rkey: uri.rkey },
      { headers: sc.getHeaders(by), encoding: 'application/json' },
    )
  // A small JPEG made here: dev-env's seed avatar is not in its npm package.
  const image = async (by, colour) => {
    const bytes = await sharp({
      create: { width: 8, height: 8, channels: 3, background: colour },
    }).jpeg().toBuffer()
    const res = await agent.com.atproto.repo.uploadBlob(bytes, {
      headers: sc.getHeaders(by),
      encoding: 'image/jpeg',
    })
    return res.data.blob
  }
  const profile = async (by, displayName, description, selfLabels, avatar) =>
    sc.updateProfile(by, {
      $type: 'app.bsky.actor.profile',
      displayName,
      description,
      avatar,
      labels: selfLabels && {
        $type: 'com.atproto.label.defs#selfLabels',
        values: selfLabels.map((val) => ({ val })),
      },
      createdAt: now(),
    })

  await profile(alice, 'Alice', 'first account', undefined, await image(alice, '#c03'))
  await profile(bob, 'Bob', '')
  await profile(carol, 'Carol', 'self-labelled profile', ['!no-unauthenticated'])
  // dan's profile is deleted again; eve never has one.
  await profile(dan, 'Dan', 'short-lived profile')
  await del(dan, { collection: 'app.bsky.actor.profile', rkey: 'self' })

  for (const [from, to] of [
    [alice, bob], [alice, carol], [bob, alice], [bob, carol], [carol, alice],
    [carol, bob], [dan, alice], [dan, bob], [eve, alice], [fred, alice], [gina, alice],
    [alice, gina],
  ]) {
    await sc.follow(from, to)
  }

  const p1 = await sc.post(alice, 'hello world')
  const p2 = await sc.post(alice, 'a gated post, only followed accounts may reply')
  await put(alice, 'app.bsky.feed.threadgate', {
    post: p2.ref.uriStr,
    allow: [{ $type: 'app.bsky.feed.threadgate#followingRule' }],
    createdAt: now(),
  }, p2.ref.uri.rkey)
  const p3 = await sc.post(bob, 'bob says hi')
  const labelled = await sc.post(carol, 'self-labelled post', undefined, undefined, undefined, {
    labels: { $type: 'com.atproto.label.defs#selfLabels', values: [{ val: 'graphic-media' }] },
  })
  const doomed = await sc.post(carol, 'this post will be deleted')
  const q1 = await sc.post(bob, 'quoting alice', undefined, undefined, p1.ref)
  const qDeleted = await sc.post(dan, 'quoting a post that gets deleted', undefined, undefined, doomed.ref)
  const qDetached = await sc.post(eve, 'quote that alice detaches', undefined, undefined, p1.ref)
  await put(alice, 'app.bsky.feed.postgate', {
    post: p1.ref.uriStr,
    detachedEmbeddingUris: [qDetached.ref.uriStr],
    embeddingRules: [],
    createdAt: now(),
  }, p1.ref.uri.rkey)
  await sc.deletePost(carol, doomed.ref.uri)

  const r1 = await sc.reply(bob, p1.ref, p1.ref, 'reply from bob')
  const r2 = await sc.reply(carol, p1.ref, r1.ref, 'reply to bob')
  const r3 = await sc.reply(alice, p1.ref, r2.ref, 'alice answers')
  const r4 = await sc.reply(dan, p1.ref, p1.ref, 'dan replies too')
  const gatedReply = await sc.reply(bob, p2.ref, p2.ref, 'bob may reply (alice follows bob)')
  const gatedOut = await sc.reply(dan, p2.ref, p2.ref, 'dan may not reply')
  // Posts with equal timestamps: their order is the tie-break rule.
  const tie = now()
  const ties = []
  for (const text of ['tie one', 'tie two', 'tie three']) {
    ties.push(await sc.post(eve, text, undefined, undefined, undefined, { createdAt: tie }))
  }
  const fredPost = await sc.post(fred, 'fred was here')
  const ginaPost = await sc.post(gina, 'gina posts before her takedown')
  const withImage = await sc.post(alice, 'a picture', undefined, [
    { image: await image(alice, '#0a6'), alt: 'a green square' },
  ])

  for (const [by, subject] of [
    [bob, p1], [carol, p1], [dan, p1], [eve, p1], [alice, p3], [carol, q1], [alice, r1],
    [bob, labelled], [alice, ties[0]], [fred, p1], [alice, ginaPost],
  ]) {
    await sc.like(by, subject.ref)
  }
  const seenMid = now()
  for (const [by, subject] of [[bob, p1], [carol, p1], [dan, p3], [alice, q1], [bob, ginaPost]]) {
    await sc.repost(by, subject.ref)
  }

  await sc.block(eve, dan)
  await sc.block(carol, eve)

  const friends = await sc.createList(alice, 'friends', 'curate')
  await sc.addToList(alice, bob, friends)
  await sc.addToList(alice, carol, friends)
  const modlist = await sc.createList(alice, 'spammers', 'mod')
  await sc.addToList(alice, eve, modlist)
  await put(bob, 'app.bsky.graph.listblock', { subject: modlist.uriStr, createdAt: now() })
  // The generator names an account's DID: resolving it stays on the local PLC.
  const feed = await sc.createFeedGen(alice, alice, 'alice feed')
  const pack = await sc.createStarterPack(alice, 'alice pack', [bob, carol], [feed.uriStr])

  // A record of each kind that is deleted again.
  const goneFollow = await sc.follow(eve, bob)
  await sc.unfollow(eve, bob)
  const goneLike = await sc.like(dan, q1.ref)
  await del(dan, goneLike)
  const goneRepost = await sc.repost(carol, p3.ref)
  await del(carol, goneRepost.uri)
  await sc.block(dan, carol)
  await sc.unblock(dan, carol)
  await sc.addToList(alice, dan, friends)
  await sc.rmFromList(alice, dan, friends)
  const goneList = await sc.createList(alice, 'short-lived', 'curate')
  await del(alice, goneList.uri)
  const goneFeed = await sc.createFeedGen(bob, bob, 'bob feed')
  await del(bob, goneFeed.uri)
  const gonePack = await sc.createStarterPack(bob, 'bob pack', [alice], [])
  await del(bob, gonePack.uri)
  await put(bob, 'app.bsky.feed.threadgate', { post: p3.ref.uriStr, allow: [], createdAt: now() }, p3.ref.uri.rkey)
  await del(bob, { collection: 'app.bsky.feed.threadgate', rkey: p3.ref.uri.rkey })
  void goneFollow

  // A profile edit, a handle change, and an #identity without a handle
  // (what the PDS's publish-identity script and PLC operations send).
  await profile(alice, 'Alice A.', 'first account, edited', undefined, sc.profiles[alice].avatar)
  await sc.updateHandle(eve, 'eve2.test')
  await network.pds.ctx.sequencer.sequenceIdentity(dan)

  await network.processAll()
  await agent.com.atproto.admin.deleteAccount(
    { did: fred },
    { headers: network.pds.adminAuthHeaders(), encoding: 'application/json' },
  )
  await network.processAll()
  await new Promise((r) => setTimeout(r, 1000))
  await network.processAll()

  // ---- moderation: dev-env's ozone labels and takes down ----
  // Ozone signs and serves the labels on its subscribeLabels stream and
  // pushes takedowns to the AppView and the PDS. This AppView version reads
  // no label stream (production runs a separate label ingester), so the
  // labels' final state is copied into its label table below, as that
  // ingester would write it.
  const mod = network.ozone.getModClient()
  const repoRef = (d) => ({ $type: 'com.atproto.admin.defs#repoRef', did: d })
  const strongRef = (p) => ({ $type: 'com.atproto.repo.strongRef', uri: p.ref.uriStr, cid: p.ref.cidStr })
  const label = (subject, create, negate = []) =>
    mod.emitEvent({
      event: { $type: 'tools.ozone.moderation.defs#modEventLabel', createLabelVals: create, negateLabelVals: negate },
      subject,
    })
  await label(strongRef(p3), ['spam'])
  await label(repoRef(eve), ['rude'])
  await label(strongRef(labelled), ['graphic-media'])
  await label(strongRef(q1), ['spam'])
  await label(strongRef(q1), [], ['spam'])
  await mod.performTakedown({ subject: strongRef(r4) })
  await mod.performTakedown({ subject: repoRef(gina) })
  await mod.performTakedown({ subject: strongRef(ties[1]) })
  await mod.performReverseTakedown({ subject: strongRef(ties[1]) })
  await network.processAll()
  const labels = await copyLabels(network)
  await network.processAll()

  await mkdir(path.join(out, 'fixtures'), { recursive: true })
  await frames.stop(path.join(out, 'frames.cap'))
  await captureLabels(network, path.join(out, 'labels.cap'), labels)

  const docs = {}
  for (const name of names) {
    const res = await fetch(`${network.plc.url}/${did[name]}`)
    docs[name] = { did: did[name], status: res.status, document: await res.json() }
  }
  // The PDS's other accounts (dev-env's service accounts), by DID.
  const listed = await agent.com.atproto.sync.listRepos({ limit: 100 })
  for (const { did: other } of listed.data.repos) {
    if (Object.values(did).includes(other)) continue
    const res = await fetch(`${network.plc.url}/${other}`)
    docs[other] = { did: other, status: res.status, document: await res.json() }
  }
  {
    const ozoneDid = network.ozone.ctx.cfg.service.did
    const res = await fetch(`${network.plc.url}/${ozoneDid}`)
    docs.ozone = { did: ozoneDid, status: res.status, document: await res.json() }
  }
  await writeFile(path.join(out, 'dids.json'), JSON.stringify(docs, null, 1) + '\n')
  await recordPds(network, path.join(out, 'pds'), [fred],
    [...names.map((n) => `${n}.test`), 'eve2.test', 'nobody.test'])

  // ---- requests ----
  const fixtures = new Map()
  const ask = async (method, id, params, viewer, cursorFrom, extraHeaders) => {
    const qs = new URLSearchParams()
    for (const [k, v] of params) qs.append(k, v)
    let cursor
    if (cursorFrom) {
      cursor = answers.get(cursorFrom)?.cursor
      if (cursor) qs.append('cursor', cursor)
    }
    const headers = { ...(viewer ? await network.serviceHeaders(viewer, method) : {}), ...extraHeaders }
    const res = await fetch(`${network.bsky.url}/xrpc/${method}?${qs}`, { headers })
    const text = await res.text()
    let body
    try {
      body = JSON.parse(text)
    } catch {
      body = { nonJsonBody: text }
    }
    answers.set(id, body)
    if (!fixtures.has(method)) fixtures.set(method, [])
    fixtures.get(method).push({
      id,
      params,
      viewer: viewer ?? null,
      cursorFrom: cursorFrom ?? null,
      ...(extraHeaders ? { headers: extraHeaders } : {}),
      status: res.status,
      ...contentLabelers(res),
      body,
    })
    return body
  }
  // Private state is written by procedures (POST) to the AppView itself, as
  // the PDS forwards them; each is recorded with its answer and replayed, in
  // order, before the reads.
  const procedures = []
  const call = async (method, id, viewer, input) => {
    const headers = {
      ...(viewer ? await network.serviceHeaders(viewer, method) : {}),
      ...(input === undefined ? {} : { 'content-type': 'application/json' }),
    }
    const res = await fetch(`${network.bsky.url}/xrpc/${method}`, {
      method: 'POST',
      headers,
      body: input === undefined ? undefined : JSON.stringify(input),
    })
    const text = await res.text()
    let body = null
    if (text) {
      try {
        body = JSON.parse(text)
      } catch {
        body = { nonJsonBody: text }
      }
    }
    procedures.push({
      method,
      id,
      viewer: viewer ?? null,
      input: input ?? null,
      status: res.status,
      contentType: res.headers.get('content-type'),
      body,
    })
    return body
  }
  const answers = new Map()
  const everyone = [alice, bob, carol, dan, eve, fred, gina]
  const allPosts = [p1, p2, p3, labelled, q1, qDeleted, qDetached, r1, r2, r3, r4,
    gatedReply, gatedOut, ...ties, fredPost, ginaPost, withImage].map((p) => p.ref.uriStr)
  // Every read as nobody and as alice; dan (blocked by eve, outside alice's
  // threadgate) for the answers a viewer changes, to keep fixtures small.
  const views = [['anon', undefined], ['alice', alice]]

  // A listing paged through 2 at a time, as `viewer`.
  const paged = async (method, id, params, viewer, pages = 3) => {
    let prev
    for (let i = 0; i < pages; i++) {
      const pid = `${id} page ${i}`
      const body = await ask(method, pid, [...params, ['limit', '2']], viewer, prev)
      if (!body.cursor) break
      prev = pid
    }
  }

  const A = 'app.bsky.actor.'
  const F = 'app.bsky.feed.'
  const G = 'app.bsky.graph.'
  const N = 'app.bsky.notification.'
  const U = 'app.bsky.unspecced.'
  const B = 'app.bsky.bookmark.'

  await call(G + 'muteActor', 'alice mutes eve', alice, { actor: eve })
  await call(G + 'muteActor', 'alice mutes eve again', alice, { actor: eve })
  await call(G + 'muteActor', 'alice mutes bob', alice, { actor: bob })
  await call(G + 'unmuteActor', 'alice unmutes bob', alice, { actor: bob })
  await call(G + 'unmuteActor', 'alice unmutes carol, never muted', alice, { actor: carol })
  await call(G + 'muteActor', 'bob mutes himself', bob, { actor: bob })
  await call(G + 'muteActor', 'no token', undefined, { actor: eve })
  await call(G + 'muteActor', 'no input', alice, undefined)
  await call(G + 'muteActor', 'bad actor', alice, { actor: 'not a did' })
  await call(G + 'muteActorList', 'dan mutes the modlist', dan, { list: modlist.uriStr })
  await call(G + 'muteActorList', 'carol mutes the curate list', carol, { list: friends.uriStr })
  await call(G + 'muteActorList', 'unknown list', carol, { list: `at://${alice}/app.bsky.graph.list/nope` })
  await call(G + 'muteThread', 'dan mutes p1', dan, { root: p1.ref.uriStr })
  await call(G + 'muteThread', 'bob mutes p2', bob, { root: p2.ref.uriStr })
  await call(G + 'unmuteThread', 'bob unmutes p2', bob, { root: p2.ref.uriStr })
  await call(B + 'createBookmark', 'alice bookmarks p3', alice, { uri: p3.ref.uriStr, cid: p3.ref.cidStr })
  await call(B + 'createBookmark', 'alice bookmarks p3 again', alice, { uri: p3.ref.uriStr, cid: p3.ref.cidStr })
  await call(B + 'createBookmark', 'alice bookmarks withImage', alice, { uri: withImage.ref.uriStr, cid: withImage.ref.cidStr })
  await call(B + 'createBookmark', 'bob bookmarks p3', bob, { uri: p3.ref.uriStr, cid: p3.ref.cidStr })
  await call(B + 'createBookmark', 'alice bookmarks r1', alice, { uri: r1.ref.uriStr, cid: r1.ref.cidStr })
  await call(B + 'deleteBookmark', 'alice removes withImage', alice, { uri: withImage.ref.uriStr })
  await call(B + 'createBookmark', 'a list is no post', alice, { uri: friends.uriStr, cid: p3.ref.cidStr })
  await call(N + 'updateSeen', 'alice has seen up to mid', alice, { seenAt: seenMid })
  await call(N + 'updateSeen', 'bob has seen all', bob, { seenAt: new Date().toISOString() })
  await call(N + 'updateSeen', 'bad seenAt', bob, { seenAt: 'yesterday' })
  await call(N + 'putPreferencesV2', 'alice notification preferences', alice, {
    reply: { include: 'follows', list: true, push: false },
    like: { include: 'all', list: false, push: false },
  })
  await call(N + 'putActivitySubscription', 'alice subscribes to bob', alice, {
    subject: bob,
    activitySubscription: { post: true, reply: false },
  })
  await call(N + 'putActivitySubscription', 'alice subscribes to carol, then not', alice, {
    subject: carol,
    activitySubscription: { post: true, reply: true },
  })
  await call(N + 'putActivitySubscription', 'alice unsubscribes carol', alice, {
    subject: carol,
    activitySubscription: { post: false, reply: false },
  })
  await call(N + 'registerPush', 'alice registers a device', alice, {
    serviceDid: network.bsky.ctx.cfg.serverDid,
    token: 'device-token',
    platform: 'web',
    appId: 'xyz.blueskyweb.app',
  })
  await call(N + 'unregisterPush', 'alice unregisters a device', alice, {
    serviceDid: network.bsky.ctx.cfg.serverDid,
    token: 'device-token',
    platform: 'web',
    appId: 'xyz.blueskyweb.app',
  })
  await network.processAll()
  for (const [vn, v] of views) {
    for (const name of names) await ask(A + 'getProfile', `${name} as ${vn}`, [['actor', did[name]]], v)
    await ask(A + 'getProfiles', `everyone as ${vn}`, everyone.map((d) => ['actors', d]), v)
    await ask(F + 'getPosts', `all posts as ${vn}`, allPosts.map((u) => ['uris', u]), v)
    await ask(F + 'getPosts', `deleted post as ${vn}`, [['uris', doomed.ref.uriStr]], v)
    for (const name of names) await ask(F + 'getAuthorFeed', `${name} as ${vn}`, [['actor', did[name]]], v)
    for (const filter of ['posts_with_replies', 'posts_no_replies', 'posts_with_media', 'posts_and_author_threads']) {
      await ask(F + 'getAuthorFeed', `alice ${filter} as ${vn}`, [['actor', alice], ['filter', filter]], v)
    }
    await paged(F + 'getAuthorFeed', `alice paged as ${vn}`, [['actor', alice]], v)
    for (const [pn, p] of [['p1', p1], ['p2', p2], ['r2', r2], ['qDeleted', qDeleted], ['qDetached', qDetached], ['labelled', labelled]]) {
      await ask(F + 'getPostThread', `${pn} as ${vn}`, [['uri', p.ref.uriStr]], v)
    }
    await ask(F + 'getPostThread', `r3 shallow as ${vn}`, [['uri', r3.ref.uriStr], ['depth', '0'], ['parentHeight', '1']], v)
    await ask(F + 'getPostThread', `deleted as ${vn}`, [['uri', doomed.ref.uriStr]], v)
    await ask(F + 'getLikes', `p1 as ${vn}`, [['uri', p1.ref.uriStr]], v)
    await paged(F + 'getLikes', `p1 paged as ${vn}`, [['uri', p1.ref.uriStr]], v)
    await ask(F + 'getRepostedBy', `p1 as ${vn}`, [['uri', p1.ref.uriStr]], v)
    await ask(F + 'getQuotes', `p1 as ${vn}`, [['uri', p1.ref.uriStr]], v)
    await ask(F + 'getQuotes', `deleted as ${vn}`, [['uri', doomed.ref.uriStr]], v)
    await ask(F + 'searchPosts', `hello as ${vn}`, [['q', 'hello']], v)
    await ask(F + 'searchPosts', `tie as ${vn}`, [['q', 'tie']], v)
    await ask(A + 'searchActors', `al as ${vn}`, [['q', 'alice']], v)
    await ask(A + 'searchActorsTypeahead', `a as ${vn}`, [['q', 'a']], v)
    await ask(F + 'getFeedGenerator', `feed as ${vn}`, [['feed', feed.uriStr]], v)
    await ask(F + 'getFeedGenerators', `feeds as ${vn}`, [['feeds', feed.uriStr]], v)
    await ask(F + 'getActorFeeds', `alice as ${vn}`, [['actor', alice]], v)
    await ask(F + 'getListFeed', `friends as ${vn}`, [['list', friends.uriStr]], v)
    for (const name of names) {
      await ask(G + 'getFollowers', `${name} as ${vn}`, [['actor', did[name]]], v)
      await ask(G + 'getFollows', `${name} as ${vn}`, [['actor', did[name]]], v)
    }
    await paged(G + 'getFollowers', `alice paged as ${vn}`, [['actor', alice]], v)
    await ask(G + 'getRelationships', `alice as ${vn}`, [['actor', alice], ...everyone.map((d) => ['others', d])], v)
    await ask(G + 'getRelationships', `eve as ${vn}`, [['actor', eve], ...everyone.map((d) => ['others', d])], v)
    await ask(G + 'getLists', `alice as ${vn}`, [['actor', alice]], v)
    await ask(G + 'getList', `friends as ${vn}`, [['list', friends.uriStr]], v)
    await ask(G + 'getList', `modlist as ${vn}`, [['list', modlist.uriStr]], v)
    await ask(G + 'getStarterPack', `pack as ${vn}`, [['starterPack', pack.uriStr]], v)
    await ask(G + 'getStarterPacks', `pack as ${vn}`, [['uris', pack.uriStr]], v)
    await ask(G + 'getActorStarterPacks', `alice as ${vn}`, [['actor', alice]], v)
    await ask('app.bsky.labeler.getServices', `alice as ${vn}`, [['dids', alice]], v)
    await ask('app.bsky.labeler.getServices', `alice detailed as ${vn}`, [['dids', alice], ['detailed', 'true']], v)
    await ask('com.atproto.identity.resolveHandle', `alice as ${vn}`, [['handle', 'alice.test']], v)
    await ask('com.atproto.identity.resolveHandle', `unknown as ${vn}`, [['handle', 'nobody.test']], v)
    for (const handle of ['dan.test', 'eve.test', 'eve2.test', 'fred.test']) {
      await ask('com.atproto.identity.resolveHandle', `${handle} as ${vn}`, [['handle', handle]], v)
    }
    await ask('com.atproto.repo.getRecord', `p1 as ${vn}`, [['repo', alice], ['collection', 'app.bsky.feed.post'], ['rkey', p1.ref.uri.rkey]], v)
    await ask('com.atproto.repo.getRecord', `profile by handle as ${vn}`, [['repo', 'alice.test'], ['collection', 'app.bsky.actor.profile'], ['rkey', 'self']], v)
    await ask('com.atproto.repo.getRecord', `deleted as ${vn}`, [['repo', carol], ['collection', 'app.bsky.feed.post'], ['rkey', doomed.ref.uri.rkey]], v)
  }

  {
    const [vn, v] = ['dan', dan]
    for (const name of ['alice', 'carol', 'eve']) await ask(A + 'getProfile', `${name} as ${vn}`, [['actor', did[name]]], v)
    await ask(A + 'getProfiles', `everyone as ${vn}`, everyone.map((d) => ['actors', d]), v)
    await ask(F + 'getPosts', `all posts as ${vn}`, allPosts.map((u) => ['uris', u]), v)
    for (const name of ['alice', 'eve']) await ask(F + 'getAuthorFeed', `${name} as ${vn}`, [['actor', did[name]]], v)
    for (const [pn, p] of [['p1', p1], ['p2', p2], ['qDeleted', qDeleted]]) {
      await ask(F + 'getPostThread', `${pn} as ${vn}`, [['uri', p.ref.uriStr]], v)
    }
    await ask(G + 'getRelationships', `eve as ${vn}`, [['actor', eve], ...everyone.map((d) => ['others', d])], v)
    await ask(G + 'getFollowers', `alice as ${vn}`, [['actor', alice]], v)
    await ask(G + 'getList', `modlist as ${vn}`, [['list', modlist.uriStr]], v)
  }

  // Viewer-only methods, as several viewers.
  for (const [vn, v] of [...views, ['dan', dan]]) {
    await ask(F + 'getActorLikes', `alice as ${vn}`, [['actor', alice]], v)
    await ask(F + 'getTimeline', `as ${vn}`, [], v)
    await ask('app.bsky.notification.listNotifications', `as ${vn}`, [], v)
    await ask('app.bsky.notification.getUnreadCount', `as ${vn}`, [], v)
    await ask(G + 'getKnownFollowers', `bob as ${vn}`, [['actor', bob]], v)
    await ask(G + 'getBlocks', `as ${vn}`, [], v)
    await ask(G + 'getListBlocks', `as ${vn}`, [], v)
  }
  for (const [vn, v] of [['bob', bob], ['eve', eve]]) {
    await ask(F + 'getActorLikes', `self as ${vn}`, [['actor', v]], v)
    await ask(F + 'getTimeline', `as ${vn}`, [], v)
    await ask('app.bsky.notification.listNotifications', `as ${vn}`, [], v)
    await ask('app.bsky.notification.getUnreadCount', `as ${vn}`, [], v)
    await ask(G + 'getBlocks', `as ${vn}`, [], v)
    await ask(G + 'getListBlocks', `as ${vn}`, [], v)
  }
  await paged(F + 'getTimeline', 'alice paged', [], alice)
  await paged('app.bsky.notification.listNotifications', 'alice paged', [], alice)

  // Bad input: missing and malformed parameters.
  await ask(A + 'getProfile', 'no actor', [], undefined)
  await ask(A + 'getProfile', 'bad actor', [['actor', 'not a did']], undefined)
  await ask(F + 'getPosts', 'bad uri', [['uris', 'nonsense']], undefined)
  await ask(F + 'getAuthorFeed', 'bad filter', [['actor', alice], ['filter', 'nope']], undefined)
  await ask(F + 'getAuthorFeed', 'limit too large', [['actor', alice], ['limit', '1000']], undefined)
  await ask(F + 'getPostThread', 'not a post', [['uri', `at://${alice}/app.bsky.feed.post/nope`]], undefined)
  await ask(G + 'getFollowers', 'unknown actor', [['actor', 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa']], undefined)
  await ask(G + 'getList', 'unknown list', [['list', `at://${alice}/app.bsky.graph.list/nope`]], undefined)

  // What the app's screens call besides the above.
  const ozoneDid = network.ozone.ctx.cfg.service.did
  for (const [vn, v] of [...views, ['dan', dan]]) {
    for (const [pn, p] of [['p1', p1], ['p2', p2], ['r2', r2], ['qDeleted', qDeleted], ['labelled', labelled], ['r4', r4], ['ginaPost', ginaPost]]) {
      await ask(U + 'getPostThreadV2', `${pn} as ${vn}`, [['anchor', p.ref.uriStr]], v)
    }
    await ask(U + 'getPostThreadOtherV2', `p2 as ${vn}`, [['anchor', p2.ref.uriStr]], v)
    await ask(U + 'getPostThreadOtherV2', `p1 as ${vn}`, [['anchor', p1.ref.uriStr]], v)
    await ask(U + 'getConfig', `as ${vn}`, [], v)
    await ask(A + 'getSuggestions', `as ${vn}`, [], v)
    await ask(G + 'getSuggestedFollowsByActor', `bob as ${vn}`, [['actor', bob]], v)
    await ask(F + 'getSuggestedFeeds', `as ${vn}`, [], v)
    await ask(U + 'getPopularFeedGenerators', `as ${vn}`, [], v)
    await ask(U + 'getSuggestedUsers', `as ${vn}`, [], v)
    await ask(U + 'getSuggestedFeeds', `as ${vn}`, [], v)
    await ask(U + 'getTrendingTopics', `as ${vn}`, [], v)
    await ask(U + 'getTrends', `as ${vn}`, [], v)
    await ask(F + 'getFeed', `alice feed as ${vn}`, [['feed', feed.uriStr]], v)
    await ask(A + 'getProfile', `gina as ${vn}`, [['actor', gina]], v)
  }
  for (const [pn, p] of [['p1', p1], ['r2', r2]]) {
    for (const [qn, q] of [
      ['oldest', [['sort', 'oldest']]], ['top', [['sort', 'top']]],
      ['followed first', [['prioritizeFollowedUsers', 'true']]],
      ['above only', [['above', 'true'], ['below', '0']]], ['not above', [['above', 'false']]],
      ['branching 1', [['branchingFactor', '1']]], ['below 1', [['below', '1']]],
    ]) {
      await ask(U + 'getPostThreadV2', `${pn} ${qn} as alice`, [['anchor', p.ref.uriStr], ...q], alice)
    }
  }
  await ask(U + 'getPostThreadV2', 'not a post', [['anchor', `at://${alice}/app.bsky.feed.post/nope`]], undefined)
  await ask(U + 'getPostThreadV2', 'no anchor', [], undefined)
  await ask(F + 'getFeed', 'unknown feed', [['feed', `at://${alice}/app.bsky.feed.generator/nope`]], alice)
  for (const [vn, v] of [['alice', alice], ['bob', bob], ['carol', carol], ['dan', dan]]) {
    await ask(G + 'getMutes', `as ${vn}`, [], v)
    await ask(G + 'getListMutes', `as ${vn}`, [], v)
    await ask(B + 'getBookmarks', `as ${vn}`, [], v)
    await ask(N + 'getPreferences', `as ${vn}`, [], v)
    await ask(N + 'listActivitySubscriptions', `as ${vn}`, [], v)
  }
  for (const method of [G + 'getMutes', G + 'getListMutes', B + 'getBookmarks', N + 'getPreferences', N + 'listActivitySubscriptions']) {
    await ask(method, 'no token', [], undefined)
  }
  await paged(B + 'getBookmarks', 'alice paged', [], alice, 2)
  // Views of labelled and taken-down subjects under each labeler choice.
  const labelledPosts = [p3, q1, labelled, r4, ginaPost, ties[1]].map((p) => ['uris', p.ref.uriStr])
  for (const [hn, h] of [
    ['ozone accepted', { 'atproto-accept-labelers': ozoneDid }],
    ['other labeler', { 'atproto-accept-labelers': 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa' }],
    ['ozone redacting', { 'atproto-accept-labelers': `${ozoneDid};redact` }],
  ]) {
    await ask(F + 'getPosts', `labelled, ${hn}`, labelledPosts, alice, undefined, h)
    await ask(A + 'getProfile', `eve, ${hn}`, [['actor', eve]], alice, undefined, h)
  }
  const Q = 'com.atproto.label.queryLabels'
  const fromOzone = ['sources', ozoneDid]
  await ask(Q, 'p3', [['uriPatterns', p3.ref.uriStr], fromOzone], undefined)
  await ask(Q, 'eve', [['uriPatterns', eve], fromOzone], undefined)
  await ask(Q, 'eve as alice', [['uriPatterns', eve], fromOzone], alice)
  await ask(Q, 'negated q1', [['uriPatterns', q1.ref.uriStr], fromOzone], undefined)
  await ask(Q, 'bob prefix', [['uriPatterns', `at://${bob}/*`], fromOzone], undefined)
  await ask(Q, 'self-labelled, two sources', [['uriPatterns', labelled.ref.uriStr], fromOzone, ['sources', carol]], undefined)
  await ask(Q, 'no sources', [['uriPatterns', p3.ref.uriStr]], undefined)
  await ask(Q, 'wildcard only', [['uriPatterns', '*'], fromOzone], undefined)
  await ask(Q, 'other labeler', [['uriPatterns', p3.ref.uriStr], ['sources', 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa']], undefined)
  await paged(Q, 'several paged', [
    ...[p3, labelled, r4, ginaPost, q1, ties[1]].map((p) => ['uriPatterns', p.ref.uriStr]),
    ['uriPatterns', eve], ['uriPatterns', gina], fromOzone,
  ], undefined, 4)
  await ask('app.bsky.labeler.getServices', 'ozone', [['dids', ozoneDid]], alice)
  await ask('app.bsky.labeler.getServices', 'ozone detailed', [['dids', ozoneDid], ['detailed', 'true']], alice)

  await writeFile(
    path.join(out, 'procedures.json'),
    `{"procedures":[\n${procedures.map((r) => JSON.stringify(r)).join(',\n')}\n]}\n`,
  )
  for (const [method, requests] of fixtures) {
    // One request a line: compact, and still diffs request by request.
    const lines = requests.map((r) => JSON.stringify(r)).join(',\n')
    await writeFile(
      path.join(out, 'fixtures', `${method}.json`),
      `{"method":${JSON.stringify(method)},"requests":[\n${lines}\n]}\n`,
    )
  }
  console.log(`recorded ${[...fixtures.values()].reduce((n, r) => n + r.length, 0)} requests to ${fixtures.size} methods and ${procedures.length} procedure calls`)
}

// Every frame from cursor 0 (the accounts dev-env made before the activity,
// then the activity as it happens) until `stop` and a quiet second after
// it, written in skyhose's capture format: "SKYHCAP1", then per frame a
// 32-bit big-endian length and the frame's bytes as sent.
function captureFrames(network) {
  const frames = []
  const ws = new WebSocket(
    `ws://127.0.0.1:${network.pds.port}/xrpc/com.atproto.sync.subscribeRepos?cursor=0`,
  )
  ws.binaryType = 'arraybuffer'
  let failed
  let quietNow = () => {}
  const started = new Promise((resolve, reject) => {
    ws.onopen = resolve
    ws.onerror = (ev) => {
      failed = new Error(`subscribeRepos: ${ev.message ?? 'error'}`)
      reject(failed)
    }
  })
  ws.onmessage = (ev) => {
    frames.push(Buffer.from(ev.data))
    quietNow()
  }
  const stop = async (file) => {
    await new Promise((resolve) => {
      let timer
      quietNow = () => {
        clearTimeout(timer)
        timer = setTimeout(resolve, 1000)
      }
      quietNow()
    })
    ws.close()
    if (failed) throw failed
    const parts = [Buffer.from('SKYHCAP1')]
    for (const f of frames) {
      const len = Buffer.alloc(4)
      len.writeUInt32BE(f.length)
      parts.push(len, f)
    }
    await writeFile(file, Buffer.concat(parts))
    console.log(`captured ${frames.length} frames`)
  }
  return { started, stop }
}

// What a backfill of this PDS reads: listRepos two at a time, each repo's
// CAR, and the handles' /.well-known/atproto-did answers (the PDS answers by
// the request's Host, which fetch does not let a caller set).
async function recordPds(network, dir, gone, handles) {
  await mkdir(path.join(dir, 'repos'), { recursive: true })
  const base = network.pds.url
  const pages = []
  let cursor
  for (;;) {
    const qs = new URLSearchParams({ limit: '2' })
    if (cursor) qs.set('cursor', cursor)
    const res = await fetch(`${base}/xrpc/com.atproto.sync.listRepos?${qs}`)
    const body = await res.json()
    pages.push({ cursor: cursor ?? null, status: res.status, body })
    cursor = body.cursor
    if (!cursor || !body.repos?.length) break
  }
  await writeFile(path.join(dir, 'listRepos.json'), JSON.stringify(pages, null, 1) + '\n')

  // Every listed repo, and the deleted accounts' answers.
  const dids = [...pages.flatMap((p) => p.body.repos ?? []).map((r) => r.did), ...gone]
  const repos = {}
  for (const did of dids) {
    const res = await fetch(`${base}/xrpc/com.atproto.sync.getRepo?did=${did}`)
    if (res.ok) {
      const file = `repos/${did.replaceAll(':', '_')}.car`
      await writeFile(path.join(dir, file), Buffer.from(await res.arrayBuffer()))
      repos[did] = { status: res.status, car: file }
    } else {
      repos[did] = { status: res.status, body: await res.json() }
    }
  }
  await writeFile(path.join(dir, 'repos.json'), JSON.stringify(repos, null, 1) + '\n')

  const port = new URL(base).port
  const wellKnown = {}
  for (const handle of handles) {
    wellKnown[handle] = await new Promise((resolve, reject) => {
      const req = http.get(
        { host: '127.0.0.1', port, path: '/.well-known/atproto-did', headers: { host: handle } },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (c) => (text += c))
          res.on('end', () => resolve({ status: res.statusCode, body: text }))
        },
      )
      req.on('error', reject)
    })
  }
  await writeFile(path.join(dir, 'wellKnown.json'), JSON.stringify(wellKnown, null, 1) + '\n')
  console.log(`recorded ${pages.length} listRepos pages, ${dids.length} repos, ${handles.length} handles`)
}

// The labels' final state, per (src, uri, cid, val) the latest by ozone's
// sequence, written into the AppView's label table (negated ones left out)
// as a label ingester would. Returns how many ozone issued.
async function copyLabels(network) {
  const rows = await network.ozone.ctx.db.db
    .selectFrom('label')
    .selectAll()
    .orderBy('id', 'asc')
    .execute()
  const latest = new Map()
  for (const row of rows) latest.set(`${row.src} ${row.uri} ${row.cid} ${row.val}`, row)
  const keep = [...latest.values()].filter((row) => !row.neg)
  if (keep.length) {
    await network.bsky.db.db
      .insertInto('label')
      .values(keep.map(({ src, uri, cid, val, neg, cts, exp }) => ({ src, uri, cid, val, neg, cts, exp })))
      .onConflict((oc) => oc.doNothing())
      .execute()
  }
  console.log(`ozone issued ${rows.length} labels, ${keep.length} in force`)
  return rows.length
}

// Ozone's subscribeLabels stream from cursor 0 until it has sent `expected`
// labels and been quiet for a second, in the capture format of frames.cap.
async function captureLabels(network, file, expected) {
  const frames = []
  const ws = new WebSocket(
    `ws://127.0.0.1:${network.ozone.port}/xrpc/com.atproto.label.subscribeLabels?cursor=0`,
  )
  ws.binaryType = 'arraybuffer'
  await new Promise((resolve, reject) => {
    let timer
    const quiet = () => {
      clearTimeout(timer)
      timer = setTimeout(resolve, 1000)
    }
    ws.onopen = quiet
    ws.onerror = (ev) => reject(new Error(`subscribeLabels: ${ev.message ?? 'error'}`))
    ws.onmessage = (ev) => {
      frames.push(Buffer.from(ev.data))
      quiet()
    }
  })
  ws.close()
  const parts = [Buffer.from('SKYHCAP1')]
  for (const f of frames) {
    const len = Buffer.alloc(4)
    len.writeUInt32BE(f.length)
    parts.push(len, f)
  }
  await writeFile(file, Buffer.concat(parts))
  console.log(`captured ${frames.length} label frames (${expected} labels issued)`)
}

// The AppView's `atproto-content-labelers` answer header, when it sent one.
function contentLabelers(res) {
  const value = res.headers.get('atproto-content-labelers')
  return value === null ? {} : { contentLabelers: value }
}
