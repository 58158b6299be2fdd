// Catch-up and exactly-once delivery of stream events (the browser twin of clients/homeroom.py).
//
// Each stream is an ordered log numbered 1, 2, 3...; the cursor of a stream is the last number
// handled. On every (re)connection the client sends `sync` with its cursors and gets every event
// after them; live events at or below a cursor are dropped (already seen); a live event beyond
// cursor+1 means something was missed: it is held back and a new sync fills the gap.
import { ApiError } from "../api/errors";
import type { Connection } from "../api/socket";
import type { StreamEvent, SyncAck } from "../api/types";

export type Source = "live" | "catchup";

export interface SyncHandlers {
  /** Each event exactly once, in order within its stream. */
  event(ev: StreamEvent, source: Source): void;
  /** After each sync page: stream facts (last seq, unread) and the conversations. */
  synced(ack: SyncAck): void;
}

export class StreamSync {
  readonly cursors = new Map<string, number>();
  private readonly held = new Map<string, Map<number, StreamEvent>>();
  private running: Promise<void> | null = null;
  private again = false;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly off: (() => void)[] = [];
  /** Counters for the curious (and the tests): how events arrived. */
  readonly stats = { live: 0, catchup: 0, dropped: 0, gaps: 0, syncs: 0 };

  constructor(
    private readonly conn: Connection,
    private readonly handlers: SyncHandlers,
  ) {
    this.off.push(conn.onConnect(() => void this.sync()));
    this.off.push(conn.onStreamEvent((ev) => this.live(ev)));
    this.off.push(conn.on("resync", () => void this.sync()));
  }

  /** Follow one more stream (a live session's Q&A) from `fromSeq`; takes effect at the next sync. */
  follow(stream: string, fromSeq = 0): void {
    if (!this.cursors.has(stream)) this.cursors.set(stream, fromSeq);
  }

  close(): void {
    for (const f of this.off) f();
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /** Catch up now; calls made while one runs are folded into one more run after it. */
  sync(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.run().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.catchUp();
      } catch (err) {
        // Not connected or no answer: the next connection syncs again; meanwhile retry soon,
        // after the wait a busy server asks for (retry_after_s), spread by jitter so that the
        // clients of a reconnection storm do not come back together.
        if (this.retryTimer) clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          if (this.conn.connected) void this.sync();
        }, retryDelayMs(err));
        return;
      }
    } while (this.again);
  }

  private async catchUp(): Promise<void> {
    for (;;) {
      const ack = await this.conn.request<SyncAck>("sync", {
        cursors: Object.fromEntries(this.cursors),
      });
      this.stats.syncs += 1;
      for (const ev of ack.events) this.accept(ev, "catchup");
      const followed = new Set<string>();
      for (const s of ack.streams) {
        followed.add(s.stream);
        // A stream followed for the first time starts at its present end: its past is read
        // from snapshots (history, lists) by whoever shows it.
        if (!this.cursors.has(s.stream)) this.cursors.set(s.stream, s.last_seq);
        this.drain(s.stream);
      }
      for (const key of [...this.cursors.keys()]) if (!followed.has(key)) this.cursors.delete(key);
      for (const key of [...this.held.keys()]) if (!followed.has(key)) this.held.delete(key);
      this.handlers.synced(ack);
      if (!ack.more.length) return;
    }
  }

  private live(ev: StreamEvent): void {
    const last = this.cursors.get(ev.stream);
    if (last === undefined) {
      // Not synced yet (the first sync is on its way): hold it; once the sync has set the
      // cursor, what follows on is handed over and what it already covered is dropped.
      this.hold(ev);
      return;
    }
    if (ev.seq <= last) {
      this.stats.dropped += 1;
      return;
    }
    if (ev.seq > last + 1) {
      this.hold(ev);
      this.stats.gaps += 1;
      void this.sync();
      return;
    }
    this.accept(ev, "live");
    this.drain(ev.stream);
  }

  private hold(ev: StreamEvent): void {
    let held = this.held.get(ev.stream);
    if (!held) this.held.set(ev.stream, (held = new Map()));
    held.set(ev.seq, ev);
  }

  private accept(ev: StreamEvent, source: Source): void {
    const last = this.cursors.get(ev.stream) ?? 0;
    if (ev.seq <= last) {
      this.stats.dropped += 1;
      return;
    }
    this.cursors.set(ev.stream, ev.seq);
    this.stats[source] += 1;
    this.handlers.event(ev, source);
  }

  /** Hand over held events that now follow on; forget those a catch-up already brought. */
  private drain(stream: string): void {
    const held = this.held.get(stream);
    while (held && held.size) {
      const next = (this.cursors.get(stream) ?? 0) + 1;
      for (const seq of held.keys()) if (seq < next) held.delete(seq);
      const ev = held.get(next);
      if (!ev) return;
      held.delete(next);
      this.accept(ev, "live");
    }
  }
}

/** How long to wait before syncing again: the server's ``retry_after_s`` when it gave one
 * (2 s otherwise), times a random factor of 0.5 to 1.5. */
export function retryDelayMs(err: unknown): number {
  const asked = err instanceof ApiError ? Number(err.details.retry_after_s) : NaN;
  const base = Number.isFinite(asked) && asked > 0 ? asked * 1000 : 2000;
  return base * (0.5 + Math.random());
}
