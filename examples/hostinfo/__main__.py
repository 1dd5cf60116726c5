from examples.hostinfo import app

app.run()
