// UTF-8 between strings and the `list<u8>` bodies of the WIT contract.
//
// QuickJS has no TextEncoder/TextDecoder. Where the engine lacks them, this module goes
// through its native URI and base64 functions (each a loop in C): decoding 70 KB that way
// takes about 2 ms in QuickJS, against about 20 ms for a loop over the bytes in
// JavaScript. Only bytes that are not valid UTF-8 take the JavaScript loop below, which
// decodes them as TextDecoder does. Where the engine has the built-ins (StarlingMonkey,
// Node.js), they are used.

/** The UTF-8 bytes of a string (a lone surrogate becomes U+FFFD, as with TextEncoder). */
export const encode = globalThis.TextEncoder
  ? ((e) => (s) => e.encode(s))(new globalThis.TextEncoder())
  : (s) => Uint8Array.fromBase64(btoa(unescape(encodeURIComponent(s.toWellFormed()))));

/** The string of UTF-8 bytes (invalid sequences become U+FFFD, as with TextDecoder). */
export const decode = globalThis.TextDecoder
  ? ((d) => (bytes) => d.decode(bytes))(new globalThis.TextDecoder())
  : decodeNative;

function decodeNative(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes);
  try {
    return decodeURIComponent(escape(atob(u8.toBase64())));
  } catch {
    // URIError: not valid UTF-8.
    return decodeBytewise(u8);
  }
}

/** A lead byte's continuation count and the range of its first continuation byte. */
function lead(c) {
  if (c >= 0xc2 && c <= 0xdf) return [1, 0x80, 0xbf];
  if (c >= 0xe0 && c <= 0xef) return [2, c === 0xe0 ? 0xa0 : 0x80, c === 0xed ? 0x9f : 0xbf];
  if (c >= 0xf0 && c <= 0xf4) return [3, c === 0xf0 ? 0x90 : 0x80, c === 0xf4 ? 0x8f : 0xbf];
  return [-1];
}

/** WHATWG's UTF-8 decoder: each maximal invalid subpart becomes one U+FFFD. */
function decodeBytewise(bytes) {
  const parts = [];
  let units = [];
  for (let i = 0; i < bytes.length; ) {
    let c = bytes[i++];
    if (c >= 0x80) {
      let [need, lower, upper] = lead(c);
      c = need < 0 ? 0xfffd : c & (0x3f >> need);
      for (; need > 0; need--) {
        const b = bytes[i];
        if (!(b >= lower && b <= upper)) {
          c = 0xfffd;
          break;
        }
        [lower, upper] = [0x80, 0xbf];
        c = (c << 6) | (b & 0x3f);
        i++;
      }
    }
    if (c >= 0x10000) {
      units.push(0xd800 + ((c - 0x10000) >> 10), 0xdc00 + ((c - 0x10000) & 0x3ff));
    } else {
      units.push(c);
    }
    if (units.length >= 8192) {
      parts.push(String.fromCharCode(...units));
      units = [];
    }
  }
  parts.push(String.fromCharCode(...units));
  return parts.join('');
}
