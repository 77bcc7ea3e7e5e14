package io.xipgate.it.authserver;

import java.io.IOException;

import jakarta.servlet.Filter;
import jakarta.servlet.FilterChain;
import jakarta.servlet.ServletException;
import jakarta.servlet.ServletRequest;
import jakarta.servlet.ServletResponse;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletRequestWrapper;

/**
 * Makes the issuer `http://127.0.0.1:<port it listens on>` whatever Host a request names.
 * The port is only known once the server listens (tests start it on port 0), after the
 * settings are built, so Spring Authorization Server derives the issuer from each request;
 * this wrapper pins what it derives it from. Runs before Spring Security.
 */
final class LoopbackIssuer implements Filter {
    @Override
    public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
            throws IOException, ServletException {
        if (request instanceof HttpServletRequest http) {
            request = new HttpServletRequestWrapper(http) {
                @Override
                public String getScheme() {
                    return "http";
                }

                @Override
                public String getServerName() {
                    return "127.0.0.1";
                }

                @Override
                public int getServerPort() {
                    return http.getLocalPort();
                }

                @Override
                public StringBuffer getRequestURL() {
                    return new StringBuffer("http://127.0.0.1:" + http.getLocalPort() + http.getRequestURI());
                }
            };
        }
        chain.doFilter(request, response);
    }
}
