// Line icons drawn for this app (no icon font, nothing fetched). Always decorative: the control
// they sit in carries the text or aria-label.
const PATHS: Record<string, string[]> = {
  home: ["M3 11l9-8 9 8", "M5 10v10h5v-6h4v6h5V10"],
  chat: ["M21 12a8 8 0 0 1-11.6 7.1L4 20.5l1.5-5A8 8 0 1 1 21 12z"],
  family: [
    "M9 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6z",
    "M17 12a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z",
    "M3 20c0-3.3 2.7-6 6-6s6 2.7 6 6",
    "M15.5 14.6c2.8.3 5 2.3 5 5.4",
  ],
  megaphone: ["M3 10v4l12 5V5L3 10z", "M15 9.5a3 3 0 0 1 0 5", "M6 14.5l1.2 5h3l-1-4"],
  mail: ["M4 5h16a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1z", "M3 7l9 6 9-6"],
  question: [
    "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z",
    "M9.5 9.2a2.6 2.6 0 1 1 3.6 2.4c-.7.3-1.1 1-1.1 1.7v.7",
    "M12 17h.01",
  ],
  link: ["M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1", "M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1"],
  users: ["M12 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z", "M4 21c0-4.4 3.6-8 8-8s8 3.6 8 8"],
  video: ["M4 6h10a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2z", "M16 10.5l5-3v9l-5-3"],
  send: ["M4 12l16-8-6 16-2.5-6.5L4 12z", "M11.5 13.5L20 4"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  camera: ["M4 8h3l2-3h6l2 3h3v11H4z", "M12 16a3 3 0 1 0 0-6 3 3 0 0 0 0 6z"],
  clip: ["M20 11.5l-8 8a5 5 0 0 1-7-7l8.5-8.5a3.3 3.3 0 0 1 4.7 4.7L9.6 17.3a1.7 1.7 0 0 1-2.4-2.4L15 7"],
  download: ["M12 4v11", "M7 10.5l5 5 5-5", "M5 20h14"],
  bell: ["M6 16V11a6 6 0 1 1 12 0v5l2 2H4l2-2z", "M10 20a2 2 0 0 0 4 0"],
  plus: ["M12 5v14", "M5 12h14"],
  pin: ["M9 4h6l-1 6 3 3H7l3-3-1-6z", "M12 13v8"],
  expand: ["M4 9V4h5", "M20 9V4h-5", "M4 15v5h5", "M20 15v5h-5"],
  shrink: ["M9 4v5H4", "M15 4v5h5", "M9 20v-5H4", "M15 20v-5h5"],
  more: ["M4 4h7v7H4z", "M13 4h7v7h-7z", "M4 13h7v7H4z", "M13 13h7v7h-7z"],
  up: ["M12 19V6", "M6 12l6-6 6 6"],
  back: ["M15 5l-7 7 7 7"],
  clock: ["M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z", "M12 7v5l3 2"],
  lock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 7 0v3"],
  unlock: ["M6 11h12v9H6z", "M8.5 11V8a3.5 3.5 0 0 1 6.8-1.2"],
  mic: ["M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z", "M5 11a7 7 0 0 0 14 0", "M12 18v3"],
  micOff: [
    "M9 9v3a3 3 0 0 0 5.1 2.1",
    "M15 10V6a3 3 0 0 0-5.7-1.3",
    "M5 11a7 7 0 0 0 11.5 5.4",
    "M19 11a7 7 0 0 1-.6 2.8",
    "M12 18v3",
    "M3 3l18 18",
  ],
  cameraOff: [
    "M4 6h10a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H4a2 2 0 0 1-2-2V8a2 2 0 0 1 2-2z",
    "M16 10.5l5-3v9l-5-3",
    "M2 3l19 18",
  ],
  screen: ["M3 4h18v12H3z", "M8 20h8", "M12 16v4"],
  hand: [
    "M8 13V6a1.5 1.5 0 0 1 3 0v5",
    "M11 10.5V4.5a1.5 1.5 0 0 1 3 0v6",
    "M14 10.5V6a1.5 1.5 0 0 1 3 0v5",
    "M17 10a1.5 1.5 0 0 1 3 0v5a6 6 0 0 1-6 6h-1.5a6 6 0 0 1-4.9-2.6L4.3 14.8a1.5 1.5 0 0 1 2.4-1.8L8 14.5",
  ],
  sound: ["M4 9v6h4l5 4V5L8 9H4z", "M16 9a3.5 3.5 0 0 1 0 6", "M18.5 6.5a7 7 0 0 1 0 11"],
  exit: ["M10 4H5v16h5", "M14 8l4 4-4 4", "M18 12H9"],
  stage: ["M12 3l2.7 5.6 6.1.9-4.4 4.3 1 6.1L12 17l-5.4 2.9 1-6.1L3.2 9.5l6.1-.9L12 3z"],
  stop: ["M6 6h12v12H6z"],
  chart: ["M4 20V10", "M10 20V4", "M16 20v-7", "M3 20h18"],
  book: ["M4 4h7a2 2 0 0 1 2 2v14a2 2 0 0 0-2-2H4z", "M20 4h-7a2 2 0 0 0-2 2v14a2 2 0 0 1 2-2h7z"],
  record: ["M6 3h9l4 4v14H6z", "M9 12h7", "M9 16h7", "M9 8h4"],
  school: ["M3 10l9-5 9 5-9 5-9-5z", "M7 12.5V17c0 1.1 2.2 2.5 5 2.5s5-1.4 5-2.5v-4.5", "M21 10v5"],
};

export type IconName = keyof typeof PATHS;

export function Icon(props: { name: IconName; size?: number; class?: string }) {
  const size = props.size ?? 20;
  return (
    <svg
      class={`icon ${props.class ?? ""}`}
      width={size}
      height={size}
      viewBox="0 0 24 24"
      fill="none"
      stroke="currentColor"
      stroke-width="1.8"
      stroke-linecap="round"
      stroke-linejoin="round"
      aria-hidden="true"
      focusable="false"
    >
      {PATHS[props.name].map((d) => (
        <path d={d} key={d} />
      ))}
    </svg>
  );
}
