// Hand-written (not generated): the host's session stats endpoint
// (GET /api/v1/sessions/{id}/stats) is a plain dict on the server, not one of realtime/views.py.
/** One leg of a participant's media link, as the host's stats report it. */
export interface LegLink {
  path: "udp" | "tcp" | "relayed" | null;
  state: string;
  estimate_bps: number | null;
  loss: number;
  rtt_ms: number | null;
  bad: ("loss" | "rtt" | "bandwidth" | "freezes")[];
  /** Tracks sent in layers: the layer this viewer receives of each (-1: video paused). */
  layers?: Record<string, number>;
  /** Screen shares: the share of the frame rate this viewer receives of each (docs/media.md,
   * "Screen share"); "paused": video paused for its connection. */
  frame_rates?: Record<string, "1" | "1/2" | "1/4" | "paused">;
  /** Its received video's freezes (>= 0.5 s, as the server sees them), their total length and
   * how long it has been frozen now (0: it is not). */
  freezes?: number;
  freeze_s?: number;
  frozen_s?: number;
  /** Publish leg: each audio source's level over the last second (null: none recent, or the
   * browser sends no ssrc-audio-level extension). */
  audio?: Record<string, AudioLevel | null>;
}

/** A publisher's audio level, from its packets' ssrc-audio-level header extension. */
export interface AudioLevel {
  /** 0-1, linear (as getStats' audioLevel). */
  audio_level: number;
  dbov: number;
  voice: boolean;
}

export interface SessionStats {
  session_id: number;
  links: Record<string, { publish?: LegLink; subscribe?: LegLink }>;
}
