import {
  XFChatError,
  type ConversationSummary,
  type PublicConversation,
  type PublicMessage,
  type PublicUser,
  type XFChatClient,
} from '../lib/client/index.js';
import { AccountDialog, type SignOut } from './account.js';
import { ConversationView } from './conversationView.js';
import { dayKey, followTimeZone } from './dates.js';
import { byId } from './dom.js';
import { Drafts } from './drafts.js';
import { DetailsPanel, NewGroupDialog, type GroupDeps } from './groups.js';
import { showNotice } from './notice.js';
import { Notifier } from './notifier.js';
import { Outbox, type OutboxEntry } from './outbox.js';
import { readRetryWait } from './retry.js';
import { Router } from './router.js';
import { Sidebar } from './sidebar.js';
import { ConversationStore, type ConversationState } from './store.js';
import { waitWords } from './text.js';

/** Shown after the page started over because the server's data went back to an earlier point. */
const RESTORED_NOTICE =
  'The server’s messages were restored from a backup, so this page was reloaded: messages sent after that backup are gone.';

/**
 * How many times a conversation's details are read before a failure that would pass by itself is shown (with the
 * backoff of `readRetryWait`, about half a minute of tries when the server names no wait).
 */
const DETAILS_READ_TRIES = 6;

/** Why the conversation list could not be read, as its pane says it. */
const LIST_ERRORS: Partial<Record<string, string>> = {
  DB_UNAVAILABLE: 'the server cannot read them right now',
  OVERLOADED: 'the server is busy',
  RATE_LIMITED: 'too many requests in a short time',
  NETWORK_ERROR: 'the server could not be reached',
  TIMEOUT: 'the server did not answer in time',
};
/**
 * A signed-in session: keeps one live subscription per conversation (so unread counts and previews update
 * everywhere), routes the server's pushes to the sidebar and the open conversation, and keeps the address bar,
 * the tab title and notifications in step.
 */
export class ChatSession {
  private readonly store: ConversationStore;
  private readonly drafts: Drafts;
  private readonly outbox: Outbox;
  private readonly sidebar: Sidebar;
  private readonly view: ConversationView;
  private readonly details: DetailsPanel;
  private readonly newGroup: NewGroupDialog;
  private readonly account: AccountDialog;
  private readonly router: Router;
  private readonly notifier: Notifier;
  private readonly layout = byId('chat-view', HTMLDivElement);
  private readonly skipLink = byId('skip-link', HTMLAnchorElement);
  /** Groups I am leaving from this tab: their removal is no news to me. */
  private readonly leaving = new Set<string>();
  /** Conversations whose details are being read again. */
  private readonly refreshing = new Map<string, Promise<void>>();
  /** The details reads that failed and wait to be tried again, by conversation (see `refresh`). */
  private readonly detailsRetries = new Map<string, ReturnType<typeof setTimeout>>();
  /** Counts each conversation's details reads (`refresh`): a newer one makes what an older one still has to do moot. */
  private readonly detailsReads = new Map<string, number>();
  /**
   * How many times each conversation's details were replaced or it was removed (an event, or the answer of a
   * change made here). Conversations carry no version: a read sent before one of these may answer the state as
   * it was, and must not put it back (a removed group, an old name).
   */
  private readonly changes = new Map<string, number>();
  /**
   * Each user's latest `user:updated` and when it arrived (performance.now()): a read sent before it (a lookup, a
   * conversation's details, the list, the friends) may answer the profile as it was, and must not undo the newer
   * one (a rename, or an account deleted meanwhile). One entry per person heard of: friends and co-participants.
   */
  private readonly profilesHeard = new Map<string, { user: PublicUser; at: number }>();
  /** Counts the reads of the list (`reloadList`): only the newest one is tried again when it fails. */
  private listTicket = 0;
  /** Counts the reads of friends, requests and blocks (`refreshSocial`): only the newest one is tried again. */
  private socialTicket = 0;
  /** Counts the reads of my own profile (`rereadMe`): only the newest one is tried again. */
  private meTicket = 0;
  /** Counts the rounds of `catchUpMarkers`: only the newest one reads the list again. */
  private markersTicket = 0;
  /** Counts the calls of `show`: `start` shows the address only if nothing else was shown while it read. */
  private shows = 0;
  /** Counts the lookups of each sender (`lookUp`): only the newest one's failure is reported. */
  private readonly lookUps = new Map<string, number>();
  /**
   * The subscriptions' `whenReady()` since the last round of `catchUpMarkers` began: of those a list read started,
   * and of every one when the connection came back (each subscribes again). Taken as they start: asked later, a
   * subscription whose subscribe is on its way already says it is ready.
   */
  private joins: Array<Promise<void>> = [];
  /** Resolved once a list read was applied (the first one at load may fail, and be tried again). */
  private readonly listLoaded: Promise<void>;
  private markListLoaded!: () => void;
  /** Whether a list read was applied. */
  private listApplied = false;
  /** Resolved at the first connection of the page's socket (see `start`), and when that was (performance.now()). */
  private readonly firstConnection: Promise<void>;
  private markFirstConnection!: () => void;
  private firstConnectedAt: number | undefined;

  /**
   * `signOut` ends this device's session by the user's own doing (see AccountDeps.signOut): `work` runs on the
   * server first, and if it fails the user stays signed in. `reload` starts the page over, `notice` on it.
   * `signingOut` says whether the page is signing out (by the user's doing or not), its drafts being forgotten.
   * `restarting` says whether the page is reloading itself (see ConversationViewDeps.restarting).
   */
  constructor(
    private readonly client: XFChatClient,
    private me: PublicUser,
    private readonly report: (error: unknown) => void,
    signOut: SignOut,
    private readonly reload: (notice: string) => void,
    private readonly signingOut: () => boolean,
    private readonly restarting: () => boolean,
  ) {
    this.listLoaded = new Promise((resolve) => (this.markListLoaded = resolve));
    this.firstConnection = new Promise((resolve) => (this.markFirstConnection = resolve));
    this.store = new ConversationStore(me.id);
    this.store.onUnknownSender = (userId) => this.lookUp(userId);
    this.drafts = new Drafts(me.id);
    this.outbox = new Outbox(me.id);
    this.router = new Router((id) => void this.show(id).catch(report));
    this.notifier = new Notifier(me.id, (id) => this.navigate(id), report);
    this.view = new ConversationView({
      client,
      store: this.store,
      drafts: this.drafts,
      outbox: this.outbox,
      report,
      changed: () => this.changed(),
      back: () => this.navigate(undefined),
      blocks: (userId) => this.sidebar.blocks(userId),
      inTouch: (userId) => this.sidebar.inTouch(userId),
      refreshSocial: () => void this.refreshSocial(),
      signingOut,
      restarting,
    });
    this.sidebar = new Sidebar({
      client,
      store: this.store,
      drafts: this.drafts,
      me,
      report,
      open: (id) => this.navigate(id),
      startDirect: (userId) => this.startDirect(userId),
      socialChanged: () => {
        this.view.socialChanged();
        // The friends a group can take: the open group's "Add a friend" and the new-group dialog.
        this.details.friendsChanged();
        this.newGroup.friendsChanged();
      },
      profilesHeardSince: (since) => this.profilesHeardSince(since),
      reloadList: () => void this.reloadList(),
    });
    const groupDeps: GroupDeps = {
      client,
      store: this.store,
      report,
      friends: () => this.sidebar.friendsList,
      update: (conversation) => this.add(conversation),
      refresh: (id) => this.refresh(id),
      leaving: (id, yes) => (yes ? this.leaving.add(id) : this.leaving.delete(id)),
      left: (id) => this.remove(id, 'left'),
      created: (conversation) => {
        this.add(conversation);
        this.navigate(conversation.id);
      },
    };
    this.details = new DetailsPanel(groupDeps);
    this.newGroup = new NewGroupDialog(groupDeps);
    this.account = new AccountDialog({
      client,
      report,
      me: () => this.me,
      profileChanged: (user) => this.userUpdated(user),
      signOut,
    });
    // The skip link's target follows what is shown: the message box, or the list when no conversation is open
    // (a link to a hidden message box did nothing).
    this.skipLink.hidden = false;
    this.skipLink.onclick = (event) => {
      event.preventDefault();
      if (this.view.currentId === undefined) this.sidebar.focusFirst();
      else byId('composer-input', HTMLTextAreaElement).focus();
    };
  }

  /** Loads friends and conversations, subscribes to every conversation, listens to the server, opens the URL's. */
  async start(focusList = false): Promise<void> {
    const { client } = this;
    // The reads below can take a while: a reader who meanwhile opened a conversation (or the list) keeps their place
    // and their focus (see the end).
    const showsBefore = this.shows;
    const rereadSocial = () => void this.refreshSocial();
    client.on('friend:request', rereadSocial);
    client.on('friend:accepted', rereadSocial);
    client.on('conversation:added', (conversation) => this.add(conversation));
    // A rename or a participant change, live for every participant.
    client.on('conversation:updated', (conversation) => this.add(conversation));
    client.on('conversation:removed', ({ conversationId }) => this.remove(conversationId));
    // A new display name, or a deleted account ("Deleted user"), wherever the person is shown.
    client.on('user:updated', (user) => this.userUpdated(user));
    client.on('typing', (event) => this.view.onTyping(event));
    // The list says which conversations have a draft: another tab of this browser writes them too.
    window.addEventListener('storage', (event) => {
      if (event.storageArea === localStorage && this.drafts.isKey(event.key)) this.changed();
    });
    client.on('state', (state) => {
      this.view.onConnectionState();
      if (state !== 'connected') return;
      // What the server told while no socket of this page was in my rooms reached nobody here, and is not told
      // again: at the first connection, what came while the first reads below were on their way and the socket
      // connected; after a drop (or a refused connection), what came meanwhile (new conversations, read markers,
      // titles, friend requests and answers, my profile changed on another device). Every conversation subscribes
      // now: the round of `catchUpMarkers` waits for those joins, not for an earlier round's (still here if its list
      // read never succeeded, the connection dropping again and again, or ended if a connection was refused).
      this.joins = [];
      for (const conversation of this.store.sorted()) this.expectJoin(conversation.id);
      if (this.firstConnectedAt !== undefined) void this.reloadList();
      else {
        this.firstConnectedAt = performance.now();
        this.markFirstConnection();
        // A list read applied already was sent before this connection: it is read again once these joins are done
        // (at once when there are none, an empty list included). One still on its way (or waiting to be tried
        // again) sees to that itself when it is applied (`reloadList`).
        if (this.listApplied) {
          this.joins.push(this.firstConnection);
          void this.catchUpMarkers();
        }
      }
      rereadSocial();
      this.rereadMe();
    });
    client.on('conversation:read', (event) => {
      const state = this.store.get(event.conversationId);
      if (!state) return;
      this.store.markRead(state, event.userId, event.seq);
      this.view.onRead(event);
      this.changed();
    });

    // Days and times follow the clock and the time zone from now on, whether or not the reads below succeed.
    this.relabelAtMidnight();
    // Each read is tried again by itself until it succeeds (one failing does not hold the other back); what
    // follows waits for the list, and for friends, requests and blocks to have been tried once.
    const social = this.refreshSocial();
    void this.reloadList();
    await Promise.all([this.listLoaded, social]);
    // What an earlier page typed but did not see stored goes out again now (exactly once: same clientMsgIds);
    // what it wrote for conversations no longer in the list is looked into.
    const elsewhere = this.view.resumePending();
    void this.unsentOutsideList(elsewhere).catch(this.report);
    this.changed();
    // What the address names, unless the reader opened something else (or the list) meanwhile: shown again, the
    // conversation they opened would take the focus back to its message box from wherever they had moved it.
    if (this.shows === showsBefore) await this.show(this.router.current());
    // After a login by keyboard the form that had focus is gone: focus goes to the list (an opened conversation
    // has already put it in its message box).
    const active = document.activeElement;
    if (focusList && (active === null || active === document.body || active.closest('[hidden]') !== null))
      this.sidebar.focusFirst();
  }

  /**
   * Reads the list: at load, and again after the connection came back. Conversations added meanwhile are followed,
   * and read markers, titles and previews catch up (never backwards: `upsert`). One changed or removed since the
   * read was sent keeps what came meanwhile; one I was removed from meanwhile goes when its subscription is refused.
   * A read that fails for a while (the database or the network is down, too many requests) is tried again by itself
   * (after the server's Retry-After, or with backoff), the list saying so, until it succeeds or a newer read takes
   * over; while a sign-out is on its way or the page reloads, the next try waits, and so does the report of a failure
   * that does not pass by itself (`whenStaying`). Resolves when it was applied, or given up. Once applied, the list is
   * read once more after the subscriptions it started (or those of a reconnection) have joined: `catchUpMarkers`.
   */
  private async reloadList(): Promise<void> {
    const ticket = ++this.listTicket;
    const superseded = () => ticket !== this.listTicket;
    for (let attempt = 0; ; attempt += 1) {
      const sent = performance.now();
      const asked = new Map(this.changes);
      let conversations: ConversationSummary[];
      try {
        conversations = await this.client.conversations.list();
      } catch (err) {
        if (superseded()) return;
        const wait = readRetryWait(err, attempt);
        if (wait === undefined) {
          this.sidebar.showListFailure(undefined);
          this.whenStaying(() => this.report(err), superseded);
          return;
        }
        console.error(err);
        const reason =
          err instanceof XFChatError
            ? (LIST_ERRORS[err.code] ?? err.message.replace(/\.$/, ''))
            : 'something went wrong';
        this.sidebar.showListFailure(
          `Could not load the conversations: ${reason}. Trying again in ${waitWords(wait / 1000)}…`,
        );
        await new Promise((resolve) => setTimeout(resolve, wait));
        // While a sign-out is on its way (it ends in a reload, or fails: a wrong password), the next try waits.
        while (this.ending() && !superseded()) await new Promise((resolve) => setTimeout(resolve, 1000));
        if (superseded()) return;
        continue;
      }
      // An older read's answer is applied too (what changed since it was sent is not put back): it may be the only
      // one to come for a while.
      if (ticket === this.listTicket) this.sidebar.showListFailure(undefined);
      for (const summary of conversations) {
        if ((this.changes.get(summary.id) ?? 0) !== (asked.get(summary.id) ?? 0)) continue;
        const known = this.store.get(summary.id) !== undefined;
        const state = this.store.upsert(summary);
        if (!known) {
          this.follow(state);
          this.expectJoin(state.id);
        }
      }
      this.learnProfilesHeardSince(sent);
      const current = this.view.currentId === undefined ? undefined : this.store.get(this.view.currentId);
      if (current) {
        this.view.refresh(current);
        this.details.show(current);
      }
      this.changed();
      this.markListLoaded();
      this.listApplied = true;
      // Sent before the first connection, this answer may miss what was told meanwhile to no socket of the page: it
      // is read again after that connection too (see `start`).
      if (this.firstConnectedAt === undefined || sent < this.firstConnectedAt)
        this.joins.push(this.firstConnection);
      void this.catchUpMarkers();
      return;
    }
  }

  /** Notes that a conversation's subscription is (re)subscribing: `catchUpMarkers` waits until it has joined. */
  private expectJoin(conversationId: string): void {
    const subscription = this.client.subscription(conversationId);
    // Rejected: the subscription ended (I am no longer in the conversation), or the connection stopped (at its
    // next connection a new round begins): there is nothing more to wait for.
    if (subscription) this.joins.push(subscription.whenReady().catch(() => undefined));
  }

  /**
   * Reads the list once more when the subscriptions of a load or a reconnection have all joined (or ended), and
   * takes the read markers it has. The list is read before the subscriptions join their conversations' rooms
   * (at load each subscribe waits its turn, spread over seconds when there are many), and a read made on another
   * device in between (my phone, an SDK client) reaches nobody here: `conversation:read` is told only to the room,
   * and neither replayed nor carried by the subscribe ack. Without this the tab title and the list counted those
   * messages as unread until a reload. One read for all (the list, a page per 200 conversations), not one per
   * conversation: a user in hundreds of them would spend the server's read budget. Its answer goes through
   * `upsert`, so nothing newer is undone: a marker never goes back within one membership (a live read heard since,
   * the open conversation read here meanwhile), and a conversation removed since the read was sent is not put back
   * (`changes`). A newer round (another reconnection) takes over from this one. A list read sent before the first
   * connection also waits for that connection (see `start`): it may miss a conversation started meanwhile, an empty
   * list included. Nothing joining (the read again itself, when it brought no conversation to follow), nothing to do.
   * While a sign-out is on its way the read waits, and goes out if it fails (`whenStaying`); the connection lost
   * meanwhile, the reconnection's own round reads again.
   */
  private async catchUpMarkers(): Promise<void> {
    const joins = this.joins.splice(0);
    if (joins.length === 0) return;
    const ticket = ++this.markersTicket;
    await Promise.all(joins);
    this.whenStaying(
      () => void this.reloadList(),
      () => ticket !== this.markersTicket || this.client.state !== 'connected',
    );
  }

  /**
   * Reads friends, pending requests and blocks again. A read that fails for a while is tried again by itself (after
   * the server's Retry-After, or with backoff) until it succeeds, a newer one takes over or the page signs out or
   * reloads. Resolves once it was tried once (it never rejects: a failure that does not pass is reported).
   */
  private refreshSocial(): Promise<void> {
    const ticket = ++this.socialTicket;
    return this.readUntilDone(
      () => this.sidebar.refreshSocial(),
      () => ticket !== this.socialTicket,
    );
  }

  /**
   * Runs `read` until it succeeds or `superseded()` says a newer read took over. A failure that passes by itself
   * (the database or the network down, too many requests) is tried again after the server's Retry-After, or with
   * backoff (`readRetryWait`); any other failure is reported. Either waits while the page signs out or reloads
   * (`whenStaying`). Resolves once it was tried once; never rejects.
   */
  private readUntilDone(read: () => Promise<void>, superseded: () => boolean): Promise<void> {
    const attempt = (n: number): Promise<void> =>
      read().catch((err: unknown) => {
        if (superseded()) return;
        const wait = readRetryWait(err, n);
        if (wait === undefined) {
          this.whenStaying(() => this.report(err), superseded);
          return;
        }
        console.error(err);
        setTimeout(() => this.whenStaying(() => void attempt(n + 1), superseded), wait);
      });
    return attempt(0);
  }

  /**
   * Runs `then` (a read's next try, or the report of its failure) now, or, while a sign-out is on its way (it ends
   * in a reload, or fails: a wrong password) or the page reloads, once that has failed and the page stays: a
   * sign-out's own end may be what failed the read, and a page that reloads shows nothing more. Dropped once
   * `moot()` says so (a newer read took over).
   */
  private whenStaying(then: () => void, moot: () => boolean): void {
    if (moot()) return;
    if (this.ending()) setTimeout(() => this.whenStaying(then, moot), 1000);
    else then();
  }

  /** Whether the page is signing out or reloading itself: nothing is to be read again meanwhile. */
  private ending(): boolean {
    return this.signingOut() || this.restarting();
  }

  /** The profiles heard since `since` (performance.now()). */
  private profilesHeardSince(since: number): PublicUser[] {
    return [...this.profilesHeard.values()].filter(({ at }) => at > since).map(({ user }) => user);
  }

  /** Applies again the profiles heard since a read was sent, over what its answer put in the store. */
  private learnProfilesHeardSince(since: number): void {
    for (const user of this.profilesHeardSince(since)) this.store.learn(user);
  }

  /**
   * Reads my own profile again (at each connection: see `start`); a change heard since the read was sent stands. A
   * read that fails for a while is tried again by itself (`readUntilDone`). An answer that comes while a sign-out is
   * on its way is applied if the sign-out fails (`whenStaying`), unless a newer read was sent meanwhile.
   */
  private rereadMe(): void {
    const ticket = ++this.meTicket;
    const superseded = () => ticket !== this.meTicket;
    void this.readUntilDone(async () => {
      const sent = performance.now();
      const me = await this.client.me();
      this.whenStaying(() => {
        if ((this.profilesHeard.get(me.id)?.at ?? Number.NEGATIVE_INFINITY) >= sent) return;
        if (me.displayName !== this.me.displayName || me.username !== this.me.username) this.userUpdated(me);
      }, superseded);
    }, superseded);
  }

  /** Someone's profile changed (a friend, a co-participant, or me on another device): redraw their name. */
  private userUpdated(user: PublicUser): void {
    this.profilesHeard.set(user.id, { user, at: performance.now() });
    if (user.id === this.me.id) {
      this.me = user;
      this.sidebar.setMe(user);
    }
    this.store.learn(user);
    // A deleted account's friendships and requests are gone: the lists are read again.
    if (user.username === null) void this.refreshSocial();
    else this.sidebar.updateUser(user);
    const current = this.view.currentId === undefined ? undefined : this.store.get(this.view.currentId);
    if (current) {
      this.view.refresh(current);
      this.details.show(current);
    }
    this.view.renamed();
    this.changed();
  }

  /** A sender who is no participant (they left, or deleted their account): their name, by id. */
  private lookUp(userId: string): void {
    const asked = performance.now();
    const ticket = (this.lookUps.get(userId) ?? 0) + 1;
    this.lookUps.set(userId, ticket);
    // A user:updated that arrived meanwhile is newer than this answer (read before it, perhaps).
    const heardSince = () => (this.profilesHeard.get(userId)?.at ?? Number.NEGATIVE_INFINITY) >= asked;
    this.client.users.get(userId).then(
      (user) => {
        if (heardSince()) return;
        this.store.learn(user);
        this.view.renamed();
        this.changed();
      },
      (err: unknown) => {
        // Not found: the name stays "Someone"; anything else is worth knowing about, and asked again the next time
        // the sender is drawn (a lookup lost to a network failure must not leave them "Someone" until a reload).
        // Said once the page stays, if a sign-out is on its way (`whenStaying`), and not once they were asked about
        // again or heard of.
        if (err instanceof XFChatError && err.code === 'USER_NOT_FOUND') return;
        this.store.forgetAsked(userId);
        this.whenStaying(
          () => this.report(err),
          () => this.lookUps.get(userId) !== ticket || heardSince(),
        );
      },
    );
  }

  /**
   * At each local midnight "Today" becomes "Yesterday" and the list's times become days, also on a page left open
   * with nothing happening (a render said them again, a quiet night did not). The date is looked at every minute,
   * not by a timer set for midnight: a laptop asleep over midnight runs no timers, and wakes with one still hours
   * away. The page reloads at sign-out, so the interval lives as long as the session.
   */
  private relabelAtMidnight(): void {
    // The day, and the time zone: the times shown change with it too (a laptop that changed zones).
    let today = dayKey(new Date());
    setInterval(() => {
      const zoneChanged = followTimeZone();
      this.account.minutePassed();
      const now = dayKey(new Date());
      if (now === today && !zoneChanged) return;
      if (zoneChanged) this.view.timeZoneChanged();
      else this.view.relabelDays();
      today = now;
      this.changed();
    }, 60_000);
  }

  /** Opens a conversation (or, with undefined, the list) as a new entry of the browser's history. */
  private navigate(conversationId: string | undefined): void {
    this.router.go(conversationId);
    this.show(conversationId).catch(this.report);
  }

  /** Shows what the address names: a conversation, or the list. */
  private async show(conversationId: string | undefined): Promise<void> {
    this.shows += 1;
    const previous = this.view.currentId;
    const state = conversationId === undefined ? undefined : this.store.get(conversationId);
    if (conversationId !== undefined && !state) {
      this.report(new XFChatError('NOT_FOUND', 'That conversation does not exist, or you are not in it.'));
      this.router.go(undefined, { replace: true });
    }
    // The address as the app writes it (an id typed in capitals), in place.
    if (state) this.router.go(state.id, { replace: true });
    this.sidebar.setCurrent(state?.id);
    this.details.show(state);
    this.skipLink.textContent = state ? 'Skip to the message box' : 'Skip to the conversations';
    this.skipLink.href = state ? '#composer-input' : '#conversations';
    // Narrow screens show either the list or the conversation.
    this.layout.dataset.view = state ? 'conversation' : 'list';
    if (!state) {
      this.view.close();
      this.changed();
      if (previous !== undefined) this.sidebar.focusConversation(previous);
      return;
    }
    // Details may have changed since they were loaded (a rename, new members): ask the server again.
    const refreshed = this.refresh(state.id);
    await this.view.open(state);
    await refreshed;
    this.changed();
  }

  /**
   * Reads a conversation's details again; one request at a time per conversation. An answer overtaken by newer
   * details or a removal (see `changes`) is dropped: what came meanwhile is at least as new. A read that fails for a
   * while (too many reads at once, the database or the network down) is tried again by itself, a few times, after
   * the server's Retry-After or with backoff, unless such a change makes it moot; while the page signs out or
   * reloads, the next try waits, and so does the report of a failure that does not pass (`whenStaying`). The returned
   * promise settles with the first try: a caller (a group action saying it is done) does not wait out a
   * backoff, and a read asked meanwhile goes out at once, replacing the try that waits (`detailsRetries`, or, once
   * due, `detailsReads`) and the report held back.
   */
  private refresh(conversationId: string, attempt = 0): Promise<void> {
    const running = this.refreshing.get(conversationId);
    if (running) return running;
    clearTimeout(this.detailsRetries.get(conversationId));
    this.detailsRetries.delete(conversationId);
    const read = (this.detailsReads.get(conversationId) ?? 0) + 1;
    this.detailsReads.set(conversationId, read);
    const newer = () => this.detailsReads.get(conversationId) !== read;
    const asked = this.changes.get(conversationId) ?? 0;
    const sent = performance.now();
    const overtaken = () => (this.changes.get(conversationId) ?? 0) !== asked;
    const done = this.client.conversations
      .get(conversationId)
      .then(
        (conversation) => {
          if (!overtaken()) this.add(conversation, sent);
        },
        (err: unknown) => {
          if (err instanceof XFChatError && err.code === 'NOT_FOUND') {
            if (!overtaken()) this.remove(conversationId);
            return;
          }
          const wait = attempt < DETAILS_READ_TRIES - 1 ? readRetryWait(err, attempt) : undefined;
          if (wait === undefined) {
            this.whenStaying(() => this.report(err), newer);
            return;
          }
          console.error(err);
          const retry = setTimeout(() => {
            this.detailsRetries.delete(conversationId);
            this.whenStaying(
              () => void this.refresh(conversationId, attempt + 1),
              () => overtaken() || newer(),
            );
          }, wait);
          this.detailsRetries.set(conversationId, retry);
        },
      )
      .finally(() => this.refreshing.delete(conversationId));
    this.refreshing.set(conversationId, done);
    return done;
  }

  private async startDirect(userId: string): Promise<void> {
    const conversation = await this.client.conversations.createDirect(userId);
    this.add(conversation);
    this.navigate(conversation.id);
  }

  /**
   * A new conversation, or new details of a known one (they replace the old ones). `readSentAt`: when the read that
   * answered them was sent; the profiles heard since stand over its names.
   */
  private add(conversation: PublicConversation, readSentAt?: number): void {
    this.noteChange(conversation.id);
    const known = this.store.get(conversation.id) !== undefined;
    const state = this.store.upsert(conversation);
    if (readSentAt !== undefined) this.learnProfilesHeardSince(readSentAt);
    if (!known) {
      this.follow(state);
      // Added to a group that has talked already: its details say how many messages it has, not the last one.
      if (state.lastMessage === null && state.lastSeq > 0) this.readPreview(state);
    }
    this.view.refresh(state);
    if (this.view.currentId === state.id) this.details.show(state);
    this.changed();
  }

  /**
   * Reads the newest message of a conversation that came without it, for the list's preview and order (the
   * live subscription starts after it, so it would otherwise show "No messages yet" until a reload).
   */
  private readPreview(state: ConversationState): void {
    this.client.messages.before(state.id, undefined, 1).then(
      (page) => {
        const newest = page.messages.at(-1);
        if (newest === undefined || this.store.get(state.id) !== state) return;
        this.store.setPreview(state, newest);
        this.changed();
      },
      (err: unknown) => {
        // Removed again meanwhile: conversation:removed says so.
        if (!(err instanceof XFChatError && (err.code === 'NOT_FOUND' || err.code === 'FORBIDDEN')))
          this.report(err);
      },
    );
  }

  /**
   * I am no longer in a conversation: I left it here (`left`), or was removed, or left in another window. The
   * notice names it, and keeps whatever I had written for it and not sent (the draft, messages on their way)
   * whole, to copy; if it was open, focus moves to that notice (or, when there is nothing to say, to the list).
   */
  private remove(conversationId: string, how: 'left' | 'gone' = 'gone'): void {
    this.noteChange(conversationId);
    const state = this.store.get(conversationId);
    if (!state) return;
    if (this.leaving.delete(conversationId)) how = 'left';
    const title = this.store.title(state);
    const viewing = this.view.currentId === conversationId;
    const unsent = this.view.takeUnsent(conversationId);
    this.client.subscription(conversationId)?.unsubscribe().catch(this.report);
    this.store.delete(conversationId);
    this.drafts.delete(conversationId);
    if (viewing) {
      this.router.go(undefined, { replace: true });
      this.show(undefined).catch(this.report);
    }
    this.changed();
    const what = state.type === 'group' ? `“${title}”` : `the conversation with ${title}`;
    const sentence =
      how === 'left'
        ? `You left ${what}.`
        : `You are no longer in ${what}: you were removed, or left it in another window.`;
    const kept =
      unsent.length === 0 ? '' : ` What you had written there and not sent is below; copy it to keep it.`;
    if (how === 'gone' || unsent.length > 0)
      showNotice(`${sentence}${kept}`, { unsent: unsent.join('\n\n'), focus: viewing });
    else if (viewing) this.sidebar.focusFirst();
  }

  /**
   * What earlier pages of this browser wrote and did not send (kept messages `kept`, drafts) for conversations
   * not in the list: I was removed from them, or left them elsewhere, while no page of mine was open to hear it
   * (or they are new since the list was read). Each is read: one I am no longer in gets the notice of a removal
   * seen live, naming it if a kept message says its title, with that text whole to copy, and the text then
   * leaves storage; one I am in joins the list, and its messages go out. Nothing is dropped without a word.
   */
  private async unsentOutsideList(kept: readonly OutboxEntry[]): Promise<void> {
    const ids = new Set([...kept.map((entry) => entry.conversationId), ...this.drafts.conversationIds()]);
    for (const id of ids) {
      if (this.store.get(id)) continue;
      try {
        const conversation = await this.client.conversations.get(id);
        if (!this.store.get(id)) this.add(conversation);
        this.view.resumePending();
      } catch (err) {
        if (err instanceof XFChatError && (err.code === 'NOT_FOUND' || err.code === 'FORBIDDEN')) {
          // Added again meanwhile (conversation:added): its messages go out as for any conversation in the list.
          if (this.store.get(id)) this.view.resumePending();
          else this.unsentOfGone(id);
        } else console.error('could not tell whether I am still in a conversation with unsent text', id, err);
      }
    }
  }

  /** The notice for a conversation I was found to be no longer in at load, with what was kept unsent for it. */
  private unsentOfGone(conversationId: string): void {
    const entries = this.outbox.entries().filter((entry) => entry.conversationId === conversationId);
    const texts = entries.map((entry) => entry.body);
    const draft = this.drafts.get(conversationId);
    if (draft.trim() !== '') texts.push(draft);
    for (const entry of entries) this.outbox.remove(entry.clientMsgId);
    this.drafts.delete(conversationId);
    this.changed();
    if (texts.length === 0) return;
    const named = entries.findLast((entry) => entry.title !== undefined);
    const what =
      named?.title === undefined
        ? 'one of your conversations'
        : named.group === true
          ? `“${named.title}”`
          : `the conversation with ${named.title}`;
    showNotice(
      `You are no longer in ${what}: you were removed, or left it elsewhere, while this page was closed. What you had written there and not sent is below; copy it to keep it.`,
      { unsent: texts.join('\n\n') },
    );
  }

  /** A conversation's details were replaced, or it was removed: a read of them on its way is out of date. */
  private noteChange(conversationId: string): void {
    this.changes.set(conversationId, (this.changes.get(conversationId) ?? 0) + 1);
  }

  /** Unread counts, previews or drafts changed: the list and the tab title follow. */
  private changed(): void {
    this.sidebar.renderConversations();
    const current = this.view.currentId === undefined ? undefined : this.store.get(this.view.currentId);
    this.notifier.setTitle(this.store.totalUnread(), current && this.store.title(current));
  }

  /** Live messages from the last one known (nothing is delivered twice, gaps are filled by the SDK). */
  private follow(state: ConversationState): void {
    if (this.client.subscription(state.id)) return;
    this.client.subscribe(state.id, (message: PublicMessage) => this.deliver(state, message), {
      afterSeq: state.lastSeq,
      // The changes made since the answer the state was made from (before this subscription joined the room)
      // come as updates too: a message deleted meanwhile must not stay in the list's preview.
      sinceVersion: state.version,
      // An edit, a delete or a reaction change, live (and caught up after reconnections): the new state.
      onUpdate: (message: PublicMessage) => this.updated(state, message),
      // NOT_FOUND: I am no longer in it (the SDK ends the subscription so when conversation:removed comes, and a
      // subscribe after a reconnection is refused so if I was removed meanwhile). That is news, not an error:
      // the conversation goes, with its notice (once: `remove` does nothing for a conversation already gone).
      onError: (err: XFChatError) => {
        if (err.code !== 'NOT_FOUND') this.report(err);
        else if (this.store.get(state.id) === state) this.remove(state.id);
      },
      // The server holds less than this page shows: its database was restored to an earlier point. Everything the
      // page holds may be gone or about to be reused, so it starts over from what the server has.
      onReset: () => this.reload(RESTORED_NOTICE),
    });
  }

  /** A message's new state: kept if newer than the one held, and shown where it is (the list's preview too). */
  private updated(state: ConversationState, message: PublicMessage): void {
    const preview = state.lastMessage?.seq === message.seq;
    this.store.update(state, message);
    this.view.redraw(state, message.seq);
    if (preview) this.changed();
  }

  private deliver(state: ConversationState, message: PublicMessage): void {
    const fresh = this.store.addMessages(state, [message]);
    if (fresh.length === 0) return;
    this.view.showMessages(state, fresh);
    // Someone else's message moved their read marker to it (the store took it so, as the server sends no
    // conversation:read for a send's move): the receipts of my messages follow, as on a conversation:read.
    if (message.senderId !== null && message.senderId !== this.me.id)
      this.view.onRead({ conversationId: state.id, userId: message.senderId, seq: message.seq });
    for (const m of fresh) {
      if (m.senderId === this.me.id) continue;
      // Someone I do not know yet: the group has new members.
      if (m.senderId !== null && !state.participants.some((p) => p.userId === m.senderId))
        void this.refresh(state.id);
      this.notifier.message(
        {
          conversationId: state.id,
          title: this.store.title(state),
          sender: this.store.senderLabel(state, m.senderId),
          body: m.body,
        },
        this.view.currentId === state.id,
      );
    }
    this.changed();
  }
}
