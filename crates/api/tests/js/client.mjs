// Calls the API with the official client, which checks every response
// against its own bundled lexicons. Usage: node client.mjs <service url> <actor did> <post uri> <search term>
// Prints a JSON summary of what came back.
import { AtpAgent } from '@atproto/api'

const [service, actor, postUri, term] = process.argv.slice(2)
const agent = new AtpAgent({ service })
const profile = await agent.getProfile({ actor })
const feed = await agent.getAuthorFeed({ actor, limit: 30 })
const thread = await agent.getPostThread({ uri: postUri, depth: 10 })
const followers = await agent.app.bsky.graph.getFollowers({ actor, limit: 100 })
const search = await agent.app.bsky.feed.searchPosts({ q: term, limit: 25 })
const summary = {
  profile: {
    did: profile.data.did,
    handle: profile.data.handle,
    followersCount: profile.data.followersCount,
    followsCount: profile.data.followsCount,
    postsCount: profile.data.postsCount,
  },
  feed: feed.data.feed.map((item) => item.post.uri),
  thread: {
    uri: thread.data.thread.post?.uri,
    replies: (thread.data.thread.replies ?? []).length,
  },
  followers: followers.data.followers.map((f) => f.did),
  followersSubject: followers.data.subject.did,
  search: search.data.posts.map((p) => p.uri),
}
console.log(JSON.stringify(summary))
