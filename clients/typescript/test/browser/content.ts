// The files the browser page uploads, so the test knows what the server must hold.
export const fileContent = (tag: string, index: number): Uint8Array<ArrayBuffer> =>
  new TextEncoder().encode(`${tag} file ${index}\n`.repeat(100 * (index + 1)));
