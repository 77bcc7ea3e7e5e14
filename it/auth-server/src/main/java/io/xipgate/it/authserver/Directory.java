package io.xipgate.it.authserver;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** The fixed people and robots the provider knows, with the claims their tokens carry. */
final class Directory {
    record Person(String username, String password, String name, String email, List<String> groups) {
        Map<String, Object> claims() {
            Map<String, Object> c = new LinkedHashMap<>();
            c.put("preferred_username", username);
            c.put("name", name);
            c.put("email", email);
            c.put("email_verified", true);
            c.put("groups", groups);
            return c;
        }
    }

    /** A client-credentials client: its secret, the audience and groups of its tokens. */
    record Robot(String clientId, String secret, List<String> audience, List<String> groups) {}

    static final List<Person> PEOPLE = List.of(
            new Person("alice", "alice-pw", "Alice Example", "alice@example.test", List.of("devs")),
            new Person("bob", "bob-pw", "Bob Example", "bob@example.test", List.of("ops")));

    static final List<Robot> ROBOTS = List.of(
            new Robot("robot", "robot-secret", List.of("xipgate"), List.of("robots")),
            new Robot("other", "other-secret", List.of("somebody-else"), List.of("others")),
            // Several audiences: `aud` is a JSON array (one alone is a string).
            new Robot("fleet", "fleet-secret", List.of("somebody-else", "xipgate"), List.of("robots", "fleet")));

    static Person person(String username) {
        return PEOPLE.stream().filter(p -> p.username().equals(username)).findFirst().orElse(null);
    }

    static Robot robot(String clientId) {
        return ROBOTS.stream().filter(r -> r.clientId().equals(clientId)).findFirst().orElse(null);
    }

    private Directory() {}
}
