from examples.wardle import app

app.run()
