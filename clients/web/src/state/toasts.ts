import { signal } from "@preact/signals";

export interface Toast {
  id: number;
  text: string;
  kind: "info" | "success" | "error";
}

export const toasts = signal<Toast[]>([]);
let next = 1;

export function toast(text: string, kind: Toast["kind"] = "info", ms = 5000): void {
  const item = { id: next++, text, kind };
  toasts.value = [...toasts.value, item].slice(-4);
  setTimeout(() => dismissToast(item.id), ms);
}

export function dismissToast(id: number): void {
  toasts.value = toasts.value.filter((x) => x.id !== id);
}
