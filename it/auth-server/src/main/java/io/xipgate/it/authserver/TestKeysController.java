package io.xipgate.it.authserver;

import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.LinkedHashMap;
import java.util.Map;

import jakarta.servlet.http.HttpServletRequest;

import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RestController;

/** Key rollover on demand, for tests; answers loopback callers only. */
@RestController
class TestKeysController {
    private final RotatingKeys keys;

    TestKeysController(RotatingKeys keys) {
        this.keys = keys;
    }

    @PostMapping("/test/keys/rotate")
    ResponseEntity<Map<String, Object>> rotate(HttpServletRequest request) {
        if (!loopback(request)) {
            return ResponseEntity.status(HttpStatus.FORBIDDEN).build();
        }
        String kid = keys.rotate();
        return ResponseEntity.ok(answer("current", kid));
    }

    @PostMapping("/test/keys/drop-old")
    ResponseEntity<Map<String, Object>> dropOld(HttpServletRequest request) {
        if (!loopback(request)) {
            return ResponseEntity.status(HttpStatus.FORBIDDEN).build();
        }
        return ResponseEntity.ok(answer("dropped", keys.dropOld()));
    }

    private Map<String, Object> answer(String key, Object value) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put(key, value);
        m.put("kids", keys.kids());
        return m;
    }

    private static boolean loopback(HttpServletRequest request) {
        try {
            return InetAddress.getByName(request.getRemoteAddr()).isLoopbackAddress();
        } catch (UnknownHostException e) {
            return false;
        }
    }
}
