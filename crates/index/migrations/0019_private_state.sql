-- Private state: what an account stores in its AppView rather than in its
-- repo (mutes, bookmarks, notification state and preferences, push
-- registrations). It never comes from the firehose: skyhose-api writes these
-- tables on behalf of the authenticated account, and the index never writes
-- or deletes them (an account deletion leaves them; they name the account
-- only). Every table is keyed by the owning account first, so each request
-- reads one account's rows through its primary key.

-- Accounts the owner mutes. `only_reposts` / `only_quoteposts` scope the
-- mute (both false: fully muted). `created_at` orders getMutes, newest first.
CREATE TABLE private_actor_mutes (
    did text NOT NULL,
    subject_did text NOT NULL,
    only_reposts boolean NOT NULL DEFAULT false,
    only_quoteposts boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, subject_did)
);

-- Lists whose members the owner mutes.
CREATE TABLE private_list_mutes (
    did text NOT NULL,
    list_uri text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, list_uri)
);

-- Threads (by root post) whose notifications the owner silenced.
CREATE TABLE private_thread_mutes (
    did text NOT NULL,
    root_uri text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, root_uri)
);

-- Bookmarked posts. Post views count every account's bookmarks of a post,
-- hence the index by subject.
CREATE TABLE private_bookmarks (
    did text NOT NULL,
    subject_uri text NOT NULL,
    subject_cid text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, subject_uri)
);
CREATE INDEX private_bookmarks_subject_idx ON private_bookmarks (subject_uri);

-- When the owner last looked at their notifications (updateSeen): those
-- indexed until then are read.
CREATE TABLE private_notification_seen (
    did text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

-- `app.bsky.notification.defs#preferences` as the owner last put them
-- (putPreferencesV2), and `app.bsky.actor.defs#preferences` (putPreferences)
-- for a PDS that forwards them rather than keeping them itself.
CREATE TABLE private_notification_preferences (
    did text PRIMARY KEY,
    preferences jsonb NOT NULL
);
CREATE TABLE private_actor_preferences (
    did text PRIMARY KEY,
    preferences jsonb NOT NULL
);

-- Accounts whose activity the owner subscribed to; a subscription with
-- neither posts nor replies is deleted, not stored.
CREATE TABLE private_activity_subscriptions (
    did text NOT NULL,
    subject_did text NOT NULL,
    post boolean NOT NULL,
    reply boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, subject_did)
);

-- Push tokens the owner's apps registered (registerPush); stored for a
-- push service, which skyhose does not run.
CREATE TABLE private_push_registrations (
    did text NOT NULL,
    service_did text NOT NULL,
    token text NOT NULL,
    platform text NOT NULL,
    app_id text NOT NULL,
    age_restricted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (did, service_did, token, app_id)
);
