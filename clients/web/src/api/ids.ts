/** Client ids make a resend after a lost acknowledgement harmless (the server answers "duplicate").
 *  crypto.randomUUID exists only in secure contexts; a school LAN on plain http is not one. */
export function newClientId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
