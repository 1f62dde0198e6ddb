import { parseScope, type Permission } from './scopes';

/**
 * The server-rendered pages of the sign-in: plain HTML forms, one stylesheet, no script at all
 * (the CSP forbids it), readable on a phone. The form contract is fixed (docs/auth.md): login
 * posts `username` and `password`; consent posts one `scope` per granted scope and
 * `decision=allow|deny`; every form carries `rid` (the request) and `csrf`.
 */

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

export const STYLESHEET_PATH = '/auth/static/vigil.css';

export const STYLESHEET = `
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;padding:1rem;background:#f4f6f8;color:#1b1f24;line-height:1.45}
main{max-width:28rem;margin:0 auto;background:#fff;border-radius:.5rem;padding:1.25rem;box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.3rem;margin:0 0 1rem}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input[type=text],input[type=password],input[type=search]{width:100%;padding:.7rem;font-size:1rem;border:1px solid #9aa4ae;border-radius:.35rem}
button{font-size:1rem;padding:.75rem 1rem;border-radius:.35rem;border:0;margin:.75rem .5rem 0 0;cursor:pointer;min-width:7rem}
button.primary{background:#0b5cad;color:#fff}
button.secondary{background:#e4e8ec;color:#1b1f24}
ul.scopes{list-style:none;padding:0}
ul.scopes li{padding:.5rem 0;border-bottom:1px solid #e4e8ec}
ul.scopes label{display:flex;gap:.6rem;font-weight:400;margin:0}
ul.scopes input{width:1.3rem;height:1.3rem;flex:none}
code{font-size:.8rem;color:#56606b;word-break:break-all}
.error{background:#fdecea;color:#8a1c10;padding:.6rem;border-radius:.35rem}
ul.patients{padding:0;list-style:none}
ul.patients li{margin:.4rem 0}
`;

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<link rel="stylesheet" href="${STYLESHEET_PATH}">
</head>
<body>
<main>
<h1>${esc(title)}</h1>
${body}
</main>
</body>
</html>
`;
}

function hidden(rid: string, csrf: string): string {
  return `<input type="hidden" name="rid" value="${esc(rid)}">\n<input type="hidden" name="csrf" value="${esc(csrf)}">`;
}

export function loginPage(p: { rid: string; csrf: string; clientName: string; error?: string; username?: string }): string {
  return page(
    'Sign in',
    `<p><strong>${esc(p.clientName)}</strong> asks you to sign in.</p>
${p.error ? `<p class="error" role="alert">${esc(p.error)}</p>` : ''}
<form method="post" action="/auth/login">
${hidden(p.rid, p.csrf)}
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" required value="${esc(p.username ?? '')}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit" class="primary" id="sign-in">Sign in</button>
</form>`,
  );
}

export function consentPage(p: {
  rid: string;
  csrf: string;
  clientName: string;
  userName: string;
  patientLabel?: string;
  scopes: string[];
}): string {
  const items = p.scopes
    .map(
      (s, i) => `<li><label for="scope-${i}"><input type="checkbox" id="scope-${i}" name="scope" value="${esc(s)}" checked>
<span>${esc(describeScope(s))}<br><code>${esc(s)}</code></span></label></li>`,
    )
    .join('\n');
  return page(
    'Allow access?',
    `<p>Signed in as <strong>${esc(p.userName)}</strong>.</p>
<p><strong>${esc(p.clientName)}</strong> would like to:</p>
${p.patientLabel ? `<p>Patient: <strong>${esc(p.patientLabel)}</strong></p>` : ''}
<form method="post" action="/auth/consent">
${hidden(p.rid, p.csrf)}
<ul class="scopes">
${items}
</ul>
<p>Untick anything you do not want to share.</p>
<button type="submit" class="primary" name="decision" value="allow" id="allow">Allow</button>
<button type="submit" class="secondary" name="decision" value="deny" id="deny">Deny</button>
</form>`,
  );
}

export function patientPickPage(p: { rid: string; csrf: string; query: string; results: { id: string; label: string }[]; searched: boolean }): string {
  const list = p.results
    .map(
      (r) => `<li><form method="post" action="/auth/patient">${hidden(p.rid, p.csrf)}
<input type="hidden" name="patient" value="${esc(r.id)}"><button type="submit" class="secondary" data-patient="${esc(r.id)}">${esc(r.label)}</button></form></li>`,
    )
    .join('\n');
  return page(
    'Choose a patient',
    `<form method="get" action="/auth/patient">
<input type="hidden" name="rid" value="${esc(p.rid)}">
<label for="name">Name</label>
<input type="search" id="name" name="name" value="${esc(p.query)}" autocomplete="off">
<button type="submit" class="primary" id="search">Search</button>
</form>
${p.searched && p.results.length === 0 ? '<p id="no-match">No patient matches.</p>' : ''}
<ul class="patients">
${list}
</ul>`,
  );
}

export function errorPage(title: string, message: string): string {
  return page(title, `<p class="error" role="alert">${esc(message)}</p>`);
}

const TYPE_WORDS: Record<string, string> = {
  '*': 'all kinds of records',
  Observation: 'measurements and vital signs',
  Patient: 'patient details (name, birth date, contacts)',
  Device: 'devices',
  Practitioner: 'care team members',
  Subscription: 'alert subscriptions',
  ObservationDefinition: 'normal and critical ranges',
  SubscriptionTopic: 'alert topics',
  AuditEvent: 'the access log',
};

const PERM_WORDS: Record<Permission, string> = { c: 'create', r: 'read', u: 'change', d: 'delete', s: 'search' };

/** A scope in plain words for the consent page. */
export function describeScope(scope: string): string {
  switch (scope) {
    case 'openid':
      return 'Confirm who you are';
    case 'fhirUser':
      return 'Know your identity in the record (patient or care team member)';
    case 'launch/patient':
      return 'Know which patient this is about';
    case 'launch/encounter':
      return 'Know which visit this is about';
    case 'launch':
      return 'Know the patient open in your record system';
    case 'offline_access':
      return 'Keep access after you close the app, until you revoke it';
    case 'online_access':
      return 'Keep access while you are using the app';
  }
  let parsed;
  try {
    parsed = parseScope(scope);
  } catch {
    parsed = undefined;
  }
  if (!parsed) return scope;
  const verbs = parsed.perms.map((p) => PERM_WORDS[p]);
  const verbText = verbs.length > 1 ? `${verbs.slice(0, -1).join(', ')} and ${verbs[verbs.length - 1]}` : verbs[0];
  const whose =
    parsed.context === 'patient' ? 'of this patient' : parsed.context === 'user' ? 'that you can see' : 'of every patient';
  const what = TYPE_WORDS[parsed.type] ?? parsed.type;
  const restriction = parsed.query ? ` (only ${parsed.query})` : '';
  return `${verbText[0].toUpperCase()}${verbText.slice(1)} ${what} ${whose}${restriction}`;
}
