/**
 * One URL per conversation, `/c/<conversationId>` (the server serves the page there too), and `/` for none, with
 * the History API: opening a conversation adds a history entry, so reload, back and forward work as on any site.
 */
const CONVERSATION_PATH = /^\/c\/([^/]+)\/?$/;

export class Router {
  constructor(onChange: (conversationId: string | undefined) => void) {
    window.addEventListener('popstate', () => onChange(this.current()));
  }

  /**
   * The conversation the address names, if any. Ids are UUIDs, which the server writes in lower case; one in
   * capitals (retyped, or from a tool that upper-cases them) names the same conversation.
   */
  current(): string | undefined {
    const match = CONVERSATION_PATH.exec(location.pathname);
    if (!match?.[1]) return undefined;
    try {
      return decodeURIComponent(match[1]).toLowerCase();
    } catch {
      return undefined; // a mangled address names no conversation: the list is shown
    }
  }

  /** Shows `conversationId` (or none) in the address bar: a new history entry, or in place with `replace`. */
  go(conversationId: string | undefined, { replace = false } = {}): void {
    const path = conversationId === undefined ? '/' : `/c/${encodeURIComponent(conversationId)}`;
    if (location.pathname === path) return;
    if (replace) history.replaceState(null, '', path);
    else history.pushState(null, '', path);
  }
}
