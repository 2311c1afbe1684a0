import os
import sqlite3

db = sqlite3.connect("/app/data.db")
db.execute("CREATE TABLE IF NOT EXISTS visits (path TEXT)")
db.execute("CREATE TABLE IF NOT EXISTS migrations (uid INTEGER)")
db.execute("INSERT INTO migrations VALUES (?)", (os.getuid(),))
db.commit()
print(f"migrations applied by UID {os.getuid()}")
