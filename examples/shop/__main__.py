from examples.shop import app

app.run()
