package io.xipgate.it.authserver;

import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import com.nimbusds.jose.jwk.source.JWKSource;
import com.nimbusds.jose.proc.SecurityContext;

import org.springframework.beans.factory.annotation.Value;
import org.springframework.boot.web.servlet.FilterRegistrationBean;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.core.Ordered;
import org.springframework.core.annotation.Order;
import org.springframework.http.MediaType;
import org.springframework.security.config.Customizer;
import org.springframework.security.config.annotation.web.builders.HttpSecurity;
import org.springframework.security.config.annotation.web.configuration.OAuth2AuthorizationServerConfiguration;
import org.springframework.security.core.userdetails.User;
import org.springframework.security.core.userdetails.UserDetailsService;
import org.springframework.security.oauth2.core.AuthorizationGrantType;
import org.springframework.security.oauth2.core.ClientAuthenticationMethod;
import org.springframework.security.oauth2.core.oidc.OidcScopes;
import org.springframework.security.oauth2.core.oidc.OidcUserInfo;
import org.springframework.security.oauth2.core.oidc.endpoint.OidcParameterNames;
import org.springframework.security.oauth2.jwt.JwtDecoder;
import org.springframework.security.oauth2.jwt.JwtEncoder;
import org.springframework.security.oauth2.jwt.NimbusJwtEncoder;
import org.springframework.security.oauth2.server.authorization.OAuth2TokenType;
import org.springframework.security.oauth2.server.authorization.client.InMemoryRegisteredClientRepository;
import org.springframework.security.oauth2.server.authorization.client.RegisteredClient;
import org.springframework.security.oauth2.server.authorization.client.RegisteredClientRepository;
import org.springframework.security.oauth2.server.authorization.settings.AuthorizationServerSettings;
import org.springframework.security.oauth2.server.authorization.settings.ClientSettings;
import org.springframework.security.oauth2.server.authorization.settings.TokenSettings;
import org.springframework.security.oauth2.server.authorization.token.JwtEncodingContext;
import org.springframework.security.oauth2.server.authorization.token.OAuth2TokenCustomizer;
import org.springframework.security.provisioning.InMemoryUserDetailsManager;
import org.springframework.security.web.SecurityFilterChain;
import org.springframework.security.web.authentication.LoginUrlAuthenticationEntryPoint;
import org.springframework.security.web.util.matcher.MediaTypeRequestMatcher;

/**
 * Spring Authorization Server wired for the tests: the OIDC endpoints, a form login, the
 * clients of {@link Directory} plus `xipgate` (redirect URIs given at start), and the
 * claims the gate reads (`groups`, `preferred_username`, `email`).
 */
@Configuration
class SecurityConfig {

    /** The endpoints: discovery, JWKS, authorize, token, userinfo, end-session. */
    @Bean
    @Order(1)
    SecurityFilterChain authorizationServer(HttpSecurity http) throws Exception {
        http.oauth2AuthorizationServer(server -> {
            http.securityMatcher(server.getEndpointsMatcher());
            server.oidc(oidc -> oidc.userInfoEndpoint(userInfo -> userInfo.userInfoMapper(context -> {
                Directory.Person p = Directory.person(context.getAuthorization().getPrincipalName());
                Map<String, Object> claims = new LinkedHashMap<>();
                claims.put("sub", context.getAuthorization().getPrincipalName());
                if (p != null) {
                    claims.putAll(p.claims());
                }
                return new OidcUserInfo(claims);
            })));
        })
                .authorizeHttpRequests(a -> a.anyRequest().authenticated())
                // A browser without a session is sent to the login form.
                .exceptionHandling(e -> e.defaultAuthenticationEntryPointFor(
                        new LoginUrlAuthenticationEntryPoint("/login"),
                        new MediaTypeRequestMatcher(MediaType.TEXT_HTML)));
        return http.build();
    }

    /** The login form, and the test-only key endpoints (CSRF off for them). */
    @Bean
    @Order(2)
    SecurityFilterChain login(HttpSecurity http) throws Exception {
        http.authorizeHttpRequests(a -> a.requestMatchers("/test/**", "/error").permitAll()
                .anyRequest().authenticated())
                .csrf(c -> c.ignoringRequestMatchers("/test/**"))
                .formLogin(Customizer.withDefaults());
        return http.build();
    }

    @Bean
    UserDetailsService users() {
        return new InMemoryUserDetailsManager(Directory.PEOPLE.stream()
                .map(p -> User.withUsername(p.username()).password("{noop}" + p.password()).roles("USER").build())
                .toList());
    }

    @Bean
    RegisteredClientRepository clients(
            @Value("${xipgate.redirect-uris}") List<String> redirectUris,
            @Value("${xipgate.post-logout-redirect-uris}") List<String> postLogoutRedirectUris,
            @Value("${xipgate.token-ttl}") Duration tokenTtl) {
        TokenSettings tokens = TokenSettings.builder().accessTokenTimeToLive(tokenTtl).build();
        RegisteredClient xipgate = RegisteredClient.withId(UUID.randomUUID().toString())
                .clientId("xipgate")
                .clientSecret("{noop}xipgate-secret")
                .clientAuthenticationMethod(ClientAuthenticationMethod.CLIENT_SECRET_BASIC)
                .clientAuthenticationMethod(ClientAuthenticationMethod.CLIENT_SECRET_POST)
                .authorizationGrantType(AuthorizationGrantType.AUTHORIZATION_CODE)
                .authorizationGrantType(AuthorizationGrantType.REFRESH_TOKEN)
                .redirectUris(uris -> uris.addAll(nonBlank(redirectUris)))
                .postLogoutRedirectUris(uris -> uris.addAll(nonBlank(postLogoutRedirectUris)))
                .scope(OidcScopes.OPENID)
                .scope(OidcScopes.PROFILE)
                .scope(OidcScopes.EMAIL)
                .clientSettings(ClientSettings.builder().requireProofKey(true).requireAuthorizationConsent(false)
                        .build())
                .tokenSettings(tokens)
                .build();
        List<RegisteredClient> all = new java.util.ArrayList<>(List.of(xipgate));
        for (Directory.Robot r : Directory.ROBOTS) {
            all.add(RegisteredClient.withId(UUID.randomUUID().toString())
                    .clientId(r.clientId())
                    .clientSecret("{noop}" + r.secret())
                    .clientAuthenticationMethod(ClientAuthenticationMethod.CLIENT_SECRET_BASIC)
                    .clientAuthenticationMethod(ClientAuthenticationMethod.CLIENT_SECRET_POST)
                    .authorizationGrantType(AuthorizationGrantType.CLIENT_CREDENTIALS)
                    .tokenSettings(tokens)
                    .build());
        }
        return new InMemoryRegisteredClientRepository(all);
    }

    private static List<String> nonBlank(List<String> values) {
        return values.stream().map(String::trim).filter(s -> !s.isEmpty()).toList();
    }

    /** People's tokens carry their claims; robots' carry their groups and audience. */
    @Bean
    OAuth2TokenCustomizer<JwtEncodingContext> claims() {
        return context -> {
            boolean access = OAuth2TokenType.ACCESS_TOKEN.equals(context.getTokenType());
            boolean id = OidcParameterNames.ID_TOKEN.equals(context.getTokenType().getValue());
            if (!access && !id) {
                return;
            }
            if (AuthorizationGrantType.CLIENT_CREDENTIALS.equals(context.getAuthorizationGrantType())) {
                Directory.Robot r = Directory.robot(context.getRegisteredClient().getClientId());
                if (r != null) {
                    context.getClaims().claim("groups", r.groups());
                    context.getClaims().audience(r.audience());
                }
                return;
            }
            Directory.Person p = Directory.person(context.getPrincipal().getName());
            if (p != null) {
                context.getClaims().claims(c -> c.putAll(p.claims()));
            }
        };
    }

    @Bean
    RotatingKeys rotatingKeys() {
        return new RotatingKeys();
    }

    /** What JWKS publishes and the userinfo endpoint verifies with: every published key. */
    @Bean
    JWKSource<SecurityContext> jwkSource(RotatingKeys keys) {
        return keys.publishedSource();
    }

    /** What signs: the current key alone. */
    @Bean
    JwtEncoder jwtEncoder(RotatingKeys keys) {
        return new NimbusJwtEncoder(keys.signingSource());
    }

    @Bean
    JwtDecoder jwtDecoder(JWKSource<SecurityContext> jwkSource) {
        return OAuth2AuthorizationServerConfiguration.jwtDecoder(jwkSource);
    }

    /** No fixed issuer: {@link LoopbackIssuer} makes it the loopback address and real port. */
    @Bean
    AuthorizationServerSettings authorizationServerSettings() {
        return AuthorizationServerSettings.builder().build();
    }

    @Bean
    FilterRegistrationBean<LoopbackIssuer> loopbackIssuer() {
        FilterRegistrationBean<LoopbackIssuer> bean = new FilterRegistrationBean<>(new LoopbackIssuer());
        bean.setOrder(Ordered.HIGHEST_PRECEDENCE);
        return bean;
    }
}
