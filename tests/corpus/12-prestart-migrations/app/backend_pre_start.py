import time

for attempt in range(3):
    print(f"checking the database, attempt {attempt + 1}")
    time.sleep(0.1)
print("database is up")
