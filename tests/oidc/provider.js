// A real OpenID Connect provider (panva's certified `oidc-provider`) for the console's single
// sign-on tests, started by tests/test_oidc.py on 127.0.0.1 and stopped after.
//
//   PORT=... REDIRECT_URI=http://127.0.0.1:<console>/oauth2callback node provider.js
//
// One confidential client for the console and two static accounts with a `groups` claim. Sign-in
// uses the provider's development login form (any password; the login name picks the account).
// The client's grant is loaded as already given, so there is no consent screen. ID tokens carry the
// scope's claims (email, name, groups): Streamlit reads the user from the ID token.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const redirectUri = process.env.REDIRECT_URI;
if (!port || !redirectUri) {
  console.error('PORT and REDIRECT_URI are required');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const ACCOUNTS = {
  alice: { email: 'alice@example.test', email_verified: true, name: 'Alice Admin', groups: ['ops-admins', 'staff'] },
  bob: { email: 'bob@example.test', email_verified: true, name: 'Bob Oncall', groups: ['ops-oncall'] },
};
const SCOPE = 'openid email profile groups';

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'console',
    client_secret: 'console-test-secret',
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  conformIdTokenClaims: false,
  cookies: { keys: ['console-test-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return { accountId: id, async claims() { return { sub: id, ...account }; } };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPE);
    await grant.save();
    return grant;
  },
});
provider.proxy = false;

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
