package io.xipgate.it.authserver;

import java.util.ArrayList;
import java.util.List;
import java.util.UUID;

import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import com.nimbusds.jose.jwk.KeyUse;
import com.nimbusds.jose.jwk.RSAKey;
import com.nimbusds.jose.jwk.gen.RSAKeyGenerator;
import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.proc.SecurityContext;

/**
 * The signing keys: the newest signs, every key still in the list is published in JWKS.
 * Tests rotate (a new key signs, the old stays published) and drop the old ones (tokens
 * they signed stop verifying), as a real provider's key rollover does.
 */
final class RotatingKeys {
    private final List<RSAKey> keys = new ArrayList<>();
    private RSAKey current;

    RotatingKeys() {
        rotate();
    }

    /** A new key signs from now on; the old ones stay published. Returns the new kid. */
    synchronized String rotate() {
        try {
            current = new RSAKeyGenerator(2048).keyUse(KeyUse.SIGNATURE).keyID(UUID.randomUUID().toString())
                    .generate();
        } catch (JOSEException e) {
            throw new IllegalStateException("RSA key generation failed", e);
        }
        keys.add(current);
        return current.getKeyID();
    }

    /** Unpublishes every key but the current one. Returns the kids dropped. */
    synchronized List<String> dropOld() {
        List<String> dropped = keys.stream().filter(k -> k != current).map(JWK::getKeyID).toList();
        keys.removeIf(k -> k != current);
        return dropped;
    }

    synchronized List<String> kids() {
        return keys.stream().map(JWK::getKeyID).toList();
    }

    private synchronized JWKSet published() {
        return new JWKSet(new ArrayList<JWK>(keys));
    }

    private synchronized JWKSet signing() {
        return new JWKSet(current);
    }

    /** Every published key: what JWKS serves (public parts only) and what verifies. */
    JWKSource<SecurityContext> publishedSource() {
        return (selector, context) -> selector.select(published());
    }

    /** The current key alone: what signs (Nimbus refuses to choose among several). */
    JWKSource<SecurityContext> signingSource() {
        return (selector, context) -> selector.select(signing());
    }
}
