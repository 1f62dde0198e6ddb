import express from 'express';
import { BROWSER_COOKIE, type AuthorizationFlow, type Outcome, type Params } from './authorize';
import type { AuthUrls } from './discovery';
import { STYLESHEET, STYLESHEET_PATH } from './pages';

/** The value of one cookie from the Cookie header (the pages set exactly one). */
function cookie(req: express.Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return v.join('=');
  }
  return undefined;
}

/**
 * Strict CSP for the pages: no script at all, the one stylesheet, forms only to ourselves and
 * (after consent) to the app's registered redirect origin, never framed.
 */
function pageCsp(formTargets: string[]): string {
  const targets = ["'self'", ...formTargets.filter((t) => /^https?:\/\/[^\s;,'"]+$/.test(t))].join(' ');
  return `default-src 'none'; style-src 'self'; img-src 'self'; form-action ${targets}; frame-ancestors 'none'; base-uri 'none'`;
}

function send(res: express.Response, o: Outcome): void {
  res.set({ 'Cache-Control': 'no-store', Pragma: 'no-cache', 'Referrer-Policy': 'no-referrer' });
  if (o.cookie) res.append('Set-Cookie', o.cookie);
  if (o.kind === 'redirect') {
    res.redirect(303, o.location);
    return;
  }
  res.set('Content-Security-Policy', pageCsp(o.formTargets ?? []));
  res.status(o.status).type('text/html; charset=utf-8').send(o.html);
}

/** HTTP edge of the authorization endpoint and its pages (the logic lives in AuthorizationFlow). */
export function pageRouter(flow: AuthorizationFlow, urls: AuthUrls): express.Router {
  const r = express.Router();
  const form = express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 200 });
  const run = (fn: (req: express.Request) => Promise<Outcome>) => (req: express.Request, res: express.Response, next: express.NextFunction) => {
    fn(req)
      .then((o) => send(res, o))
      .catch(next);
  };
  const browser = (req: express.Request) => cookie(req, BROWSER_COOKIE);
  const q = (req: express.Request) => req.query as Params;
  const body = (req: express.Request) => (req.is('application/x-www-form-urlencoded') ? (req.body as Params) : {});

  r.get('/auth/authorize', run((req) => flow.start(q(req), browser(req), req.ip)));
  r.post('/auth/authorize', form, run((req) => flow.start(body(req), browser(req), req.ip)));
  r.get('/auth/login', run((req) => flow.loginForm(q(req), browser(req))));
  r.post('/auth/login', form, run((req) => flow.login(body(req), browser(req), req.ip)));
  r.get('/auth/patient', run((req) => flow.patientForm(q(req), browser(req))));
  r.post('/auth/patient', form, run((req) => flow.pickPatient(body(req), browser(req))));
  r.get('/auth/consent', run((req) => flow.consentForm(q(req), browser(req))));
  r.post('/auth/consent', form, run((req) => flow.consent(body(req), browser(req))));
  r.get(STYLESHEET_PATH, (_req, res) => {
    res.set('Cache-Control', 'public, max-age=3600').type('text/css').send(STYLESHEET);
  });
  r.get(new URL(urls.style).pathname, (_req, res) => {
    res.set('Cache-Control', 'public, max-age=3600').json({
      color_background: '#f4f6f8',
      color_error: '#8a1c10',
      color_highlight: '#0b5cad',
      color_modal_backdrop: '',
      color_success: '#1e7b34',
      color_text: '#1b1f24',
      dim_border_radius: '6px',
      dim_font_size: '16px',
      dim_spacing_size: '16px',
      font_family_body: 'system-ui, sans-serif',
      font_family_heading: 'system-ui, sans-serif',
    });
  });
  return r;
}
