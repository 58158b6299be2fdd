// Loading a snapshot (a history page, a list) while live events keep arriving.
//
// Events of a stream that arrive while its snapshot is loading are held; when the snapshot
// lands, those numbered after the stream's cursor at request time are applied on top, in order.
// The events carry whole states (a message, a question, a vote count), so applying one that the
// snapshot already includes changes nothing.
import type { StreamEvent } from "../api/types";
import { cursor } from "./session";

type Apply = (ev: StreamEvent) => void;

export interface Loading {
  /** The snapshot has been applied: apply what came after it. */
  done(apply: Apply): void;
  /** The snapshot failed: apply everything held to the state as it was. */
  fail(apply: Apply): void;
}

export class SnapshotGate {
  private loading = new Map<string, { from: number; held: StreamEvent[] }>();

  begin(stream: string): Loading {
    const entry = { from: cursor(stream), held: [] as StreamEvent[] };
    this.loading.set(stream, entry);
    const finish = (apply: Apply, after: number) => {
      if (this.loading.get(stream) === entry) this.loading.delete(stream);
      for (const ev of entry.held) if (ev.seq > after) apply(ev);
    };
    return { done: (apply) => finish(apply, entry.from), fail: (apply) => finish(apply, 0) };
  }

  /** True when the event was held for a loading snapshot (the caller must not apply it now). */
  hold(ev: StreamEvent): boolean {
    const entry = this.loading.get(ev.stream);
    if (!entry) return false;
    entry.held.push(ev);
    return true;
  }

  clear(): void {
    this.loading.clear();
  }
}
