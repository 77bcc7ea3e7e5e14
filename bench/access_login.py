#!/usr/bin/env python3
"""Signs in through a real login flow and prints the resulting cookies as one Cookie header.

    access_login.py START_URL USER PASSWORD COOKIE_PREFIX

Follows START_URL's redirects to the OpenID provider (Spring Authorization Server, it/),
fills its login form (with the form's CSRF token), follows the redirects back through the
callback, and prints `name=value; ...` of every cookie whose name starts with
COOKIE_PREFIX (oauth2-proxy splits large sessions into _0, _1, ...). bench/access.sh uses it
to get oauth2-proxy's session for the auth_request row.
"""

import http.cookiejar
import re
import sys
import urllib.parse
import urllib.request

start, user, password, prefix = sys.argv[1:5]
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
page = opener.open(start, timeout=30)
body = page.read().decode("utf-8", "replace")
m = re.search(r'name="_csrf"[^>]*value="([^"]+)"', body) or re.search(
    r'value="([^"]+)"[^>]*name="_csrf"', body
)
if not m:
    sys.exit(f"access_login.py: no login form with _csrf at {page.geturl()}:\n{body[:500]}")
login = urllib.parse.urljoin(page.geturl(), "/login")
form = urllib.parse.urlencode({"username": user, "password": password, "_csrf": m.group(1)}).encode()
done = opener.open(login, data=form, timeout=30)
done.read()
cookies = [f"{c.name}={c.value}" for c in jar if c.name.startswith(prefix) and "csrf" not in c.name]
if not cookies:
    sys.exit(f"access_login.py: signed in, but no cookie starting with {prefix} (ended at {done.geturl()}, {done.status})")
print("; ".join(cookies))
