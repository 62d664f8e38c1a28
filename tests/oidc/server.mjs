// The OpenID provider of the integration tests: oidc-provider from the npm registry, run by
// scripts/test on 127.0.0.1:$PORT (issuer http://127.0.0.1:$PORT).
//
// - Dynamic client registration (POST /reg) is open, so each test registers a client with the
//   exact redirect URI of the app it spawned.
// - devInteractions: the stock login and consent forms; any password is accepted and the login
//   name becomes the account id. An account id that looks like an email is also its `email`,
//   verified unless it starts with "unverified".
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 29030);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  // Put the claims of the granted scopes into the ID token, as many providers do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  cookies: { keys: ['wemaster-test-cookie-key'] },
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        const claims = { sub: id, name: `User ${id.split('@')[0]}` };
        if (id.includes('@')) {
          claims.email = id;
          claims.email_verified = !id.startsWith('unverified');
        }
        return claims;
      },
    };
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`OpenID provider ${issuer}`);
});
