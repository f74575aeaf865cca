// devicehub portal: solves the hub's anti-robot puzzle (docs/api.md, "Challenges") in the
// browser before a form that needs it is sent. The puzzle: find n, 0 <= n <= maxnumber, with
// hex(SHA-256(salt + n)) == challenge. It fills the form's hidden "challenge" field with
// {"salt", "number", "signature"} and then sends the form. This is the portal's only script;
// every other page works without JavaScript.
(function () {
  'use strict';

  var enc = new TextEncoder();

  function toHex(buf) {
    var b = new Uint8Array(buf), s = '';
    for (var i = 0; i < b.length; i++) s += (b[i] < 16 ? '0' : '') + b[i].toString(16);
    return s;
  }

  // WebCrypto exists only in secure contexts (HTTPS, or loopback). A hub reached over plain
  // HTTP on a LAN address falls back to this small synchronous SHA-256.
  var K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

  function sha256Sync(bytes) {
    var h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    var len = bytes.length, total = ((len + 9 + 63) >> 6) << 6;
    var m = new Uint8Array(total);
    m.set(bytes); m[len] = 0x80;
    var bits = len * 8;
    m[total - 4] = bits >>> 24; m[total - 3] = bits >>> 16; m[total - 2] = bits >>> 8; m[total - 1] = bits;
    var w = new Uint32Array(64);
    for (var off = 0; off < total; off += 64) {
      for (var i = 0; i < 16; i++) w[i] = (m[off + 4 * i] << 24) | (m[off + 4 * i + 1] << 16) | (m[off + 4 * i + 2] << 8) | m[off + 4 * i + 3];
      for (i = 16; i < 64; i++) {
        var a0 = w[i - 15], a1 = w[i - 2];
        var s0 = ((a0 >>> 7) | (a0 << 25)) ^ ((a0 >>> 18) | (a0 << 14)) ^ (a0 >>> 3);
        var s1 = ((a1 >>> 17) | (a1 << 15)) ^ ((a1 >>> 19) | (a1 << 13)) ^ (a1 >>> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
      }
      var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
      for (i = 0; i < 64; i++) {
        var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
        var t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
        var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
        hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    var out = new Uint8Array(32);
    for (i = 0; i < 8; i++) { out[4 * i] = h[i] >>> 24; out[4 * i + 1] = h[i] >>> 16; out[4 * i + 2] = h[i] >>> 8; out[4 * i + 3] = h[i]; }
    return out.buffer;
  }

  var subtle = window.crypto && window.crypto.subtle;

  // solve tries numbers in batches: many WebCrypto digests in flight at once are much faster
  // than one at a time, and the page stays responsive between batches.
  async function solve(ch, report) {
    var batch = 1000;
    for (var start = 0; start <= ch.maxnumber; start += batch) {
      var end = Math.min(start + batch - 1, ch.maxnumber), found = -1, n;
      if (subtle) {
        var jobs = [];
        for (n = start; n <= end; n++) jobs.push(subtle.digest('SHA-256', enc.encode(ch.salt + n)));
        var res = await Promise.all(jobs);
        for (var i = 0; i < res.length; i++) {
          if (toHex(res[i]) === ch.challenge) { found = start + i; break; }
        }
      } else {
        for (n = start; n <= end; n++) {
          if (toHex(sha256Sync(enc.encode(ch.salt + n))) === ch.challenge) { found = n; break; }
        }
        await new Promise(function (r) { setTimeout(r, 0); });
      }
      if (found >= 0) return found;
      if ((start / batch) % 20 === 0) report(Math.round(100 * start / ch.maxnumber));
    }
    throw new Error('the puzzle has no answer; reload the page');
  }

  function attach(form) {
    var field = form.elements.namedItem('challenge');
    var status = form.querySelector('.challenge-status');
    var button = form.querySelector('button[type=submit]');
    status.textContent = 'A small anti-robot puzzle is solved in your browser when you send this form.';
    form.addEventListener('submit', async function (ev) {
      if (field.value) return; // solved: let the browser send it
      ev.preventDefault();
      button.disabled = true;
      status.classList.remove('error');
      status.textContent = 'Solving the anti-robot puzzle…';
      try {
        var ident = form.elements.namedItem('identifier');
        var r = await fetch('/api/v1/challenges', {
          method: 'POST', credentials: 'same-origin',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ identifier: ident ? ident.value : '' })
        });
        var body = await r.json();
        if (!r.ok) throw new Error((body.error && body.error.message) || ('HTTP ' + r.status));
        var n = await solve(body, function (pct) { status.textContent = 'Solving the anti-robot puzzle… ' + pct + '%'; });
        field.value = JSON.stringify({ salt: body.salt, number: n, signature: body.signature });
        status.textContent = 'Puzzle solved; sending…';
        form.submit(); // submit() does not fire this handler again
      } catch (e) {
        status.textContent = 'Could not solve the anti-robot puzzle: ' + e.message;
        status.classList.add('error');
        button.disabled = false;
      }
    });
  }

  var forms = document.querySelectorAll('form.challenge');
  for (var i = 0; i < forms.length; i++) attach(forms[i]);
})();
