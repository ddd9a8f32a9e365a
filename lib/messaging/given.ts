/**
 * What a node's subscribers of one conversation have been given, so that a catch-up reads what they lack and
 * nothing reaches them twice.
 *
 * Seqs are not given in order: this node delivers its own writes at once, while another node's earlier seqs may
 * arrive later, or never while that node did not count this one (lib/messaging/fanout.ts). So the mark is the
 * highest seq up to which every seq was given, and the seqs given above it are kept beside it: a catch-up reads
 * after the mark and skips those. Versions likewise, with one difference: a version can be gone for good (a
 * message changed twice is read in its newer state only), so the version mark also moves when a catch-up has
 * read every message changed after it, in its current state.
 */
export class Given {
  private seqMark: number;
  private versionMark: number;
  private readonly seqsAbove = new Set<number>();
  private readonly versionsAbove = new Set<number>();
  /** Per message given in a state above the version mark, the newest such state's version. */
  private readonly newestAbove = new Map<number, number>();

  /** Starts with everything up to `seq` and `version` given. */
  constructor(seq: number, version: number) {
    this.seqMark = seq;
    this.versionMark = version;
  }

  /** Every seq up to this one was given. */
  get seq(): number {
    return this.seqMark;
  }

  /** Every version up to this one was given, or is gone for good. */
  get version(): number {
    return this.versionMark;
  }

  /** Seqs and versions given above the marks: holes below them are waiting for a catch-up. */
  get unsettled(): number {
    return this.seqsAbove.size + this.versionsAbove.size;
  }

  hasSeq(seq: number): boolean {
    return seq <= this.seqMark || this.seqsAbove.has(seq);
  }

  hasVersion(version: number): boolean {
    return version <= this.versionMark || this.versionsAbove.has(version);
  }

  /**
   * True when message `seq` was given in a newer state than `version`: that one must not follow it (states of one
   * message arrive out of order when two nodes' announcements and a catch-up cross). Only states above the version
   * mark are remembered; an older one at or below it is already answered by {@link hasVersion}.
   */
  hasNewerState(seq: number, version: number): boolean {
    return (this.newestAbove.get(seq) ?? 0) > version;
  }

  /** A new message was given (in a state of some version). */
  giveMessage(seq: number, version: number): void {
    if (!this.hasSeq(seq)) this.seqsAbove.add(seq);
    // A message's first state is older than every change of it: no later state can be passed over for it, so
    // the send path remembers nothing per message.
    this.giveVersion(version);
    this.settle();
  }

  /**
   * A changed message was given in the state of `version` (or that state was passed over for a newer one already
   * given): `seq` names the message, so that an older state of it that arrives later is passed over too.
   */
  giveVersion(version: number, seq?: number): void {
    if (!this.hasVersion(version)) this.versionsAbove.add(version);
    if (seq !== undefined && version > this.versionMark && !this.hasNewerState(seq, version)) {
      this.newestAbove.set(seq, version);
    }
    this.settle();
  }

  /** Everything up to `seq` and `version` was given: a page read then, or a catch-up read through them. */
  raise(seq: number, version: number): void {
    this.seqMark = Math.max(this.seqMark, seq);
    this.versionMark = Math.max(this.versionMark, version);
    for (const s of this.seqsAbove) if (s <= this.seqMark) this.seqsAbove.delete(s);
    for (const v of this.versionsAbove) if (v <= this.versionMark) this.versionsAbove.delete(v);
    for (const [s, v] of this.newestAbove) if (v <= this.versionMark) this.newestAbove.delete(s);
    this.settle();
  }

  private settle(): void {
    while (this.seqsAbove.delete(this.seqMark + 1)) this.seqMark++;
    const versionMark = this.versionMark;
    while (this.versionsAbove.delete(this.versionMark + 1)) this.versionMark++;
    if (this.versionMark !== versionMark) {
      for (const [seq, version] of this.newestAbove)
        if (version <= this.versionMark) this.newestAbove.delete(seq);
    }
  }
}
