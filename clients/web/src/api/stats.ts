// Hand-written (not generated): the host's session stats endpoint
// (GET /api/v1/sessions/{id}/stats) is a plain dict on the server, not one of realtime/views.py.
/** One leg of a participant's media link, as the host's stats report it. */
export interface LegLink {
  path: "udp" | "tcp" | "relayed" | null;
  state: string;
  estimate_bps: number | null;
  loss: number;
  rtt_ms: number | null;
  bad: ("loss" | "rtt" | "bandwidth")[];
  /** Tracks sent in layers: the layer this viewer receives of each (-1: video paused). */
  layers?: Record<string, number>;
}

export interface SessionStats {
  session_id: number;
  links: Record<string, { publish?: LegLink; subscribe?: LegLink }>;
}
